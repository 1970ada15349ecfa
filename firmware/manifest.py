# The application modules the boards freeze.  main.py stays on a charger's filesystem
# (the port runs it from there at boot), so it is not listed here.

module("app.py")
module("crash.py")
