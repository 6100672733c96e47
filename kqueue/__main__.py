from kqueue.cli.main import run

run()
