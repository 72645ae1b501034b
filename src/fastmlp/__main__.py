"""Command line: ``python -m fastmlp {demo,config} [--help]``."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m fastmlp",
        description="fastmlp: fast multilayer perceptrons on the CPU.")
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.add_parser(
        "demo", help="train the course's networks on the embedded data and print the "
        "accuracy and the speed against NumPy (the default command)")
    commands.add_parser(
        "config", help="show the backend, the SIMD kernels, the threads, the BLAS library "
        "fastmlp's gemm calls and the environment variables that change them")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "config":
        from fastmlp import show_config

        show_config()
    else:
        from fastmlp.demo import main as demo

        demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
