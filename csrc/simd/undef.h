/* Clears one (instruction set, dtype) instance's macros before the next include of
   microgemm.inc (deliberately no include guard). */
#undef REAL
#undef VEC
#undef LANES
#undef MASK
#undef V_ZERO
#undef V_SET1
#undef V_LOAD
#undef V_STORE
#undef V_MASK
#undef V_LOADM
#undef V_STOREM
#undef V_FMA
#undef V_ADD
#undef V_MUL
#undef V_SUB
#undef V_GT
#undef V_LE
#undef V_NAN
#undef V_SEL
#undef V_HSUM
#undef MG_NAME
