"""The example app `kqueue demo` runs: a few task types, some of which fail on purpose."""
