import sys

from bench.experiments import main

main(sys.argv[1:])
