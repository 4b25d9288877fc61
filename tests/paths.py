"""Where the tests find things: the project root and the photos Debian packages ship."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIMAGE = "/usr/lib/python3/dist-packages/skimage/data"
DARKNET = "/usr/share/darknet/data"

# Where the API reads a JSON body it must be declared JSON (a browser sends text/plain and forms
# to other origins without asking first).
JSON_TYPE = {"Content-Type": "application/json"}
