"""Command line: `python -m fastmlp demo` trains the course's networks; `config` shows
what fastmlp runs on."""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "demo"
    if command == "demo":
        from fastmlp.demo import main as demo

        demo(argv[1:])
    elif command == "config":
        from fastmlp import show_config

        show_config()
    else:
        print(f"usage: python -m fastmlp [demo|config]  (unknown command {command!r})",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
