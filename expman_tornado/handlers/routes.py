"""URL patterns of the API, relative to the server's base URL.

A name is one path segment, matched percent-encoded and decoded once by Tornado
(``+`` stays a plus). Names are checked by the store, not here, so that a bad
name gets a JSON 400 rather than falling through to another route.
"""

SEGMENT = r"[^/]+"

EXPERIMENTS = r"/api/experiments"
EXPERIMENT = r"/api/experiments/(?P<experiment>%s)" % SEGMENT
RUNS = EXPERIMENT + r"/runs"
RUN = RUNS + r"/(?P<run>%s)" % SEGMENT
METRICS = RUN + r"/metrics"
SYSTEM = RUN + r"/system"
HISTOGRAMS = RUN + r"/histograms"
MEDIA = RUN + r"/media"
ARTIFACTS = RUN + r"/artifacts"
ARTIFACT_FILE = ARTIFACTS + r"/(?P<path>.+)"
RUN_FILE = RUN + r"/files/(?P<path>.+)"
LOG = RUN + r"/logs/(?P<name>%s)" % SEGMENT
STATS = r"/api/stats"
SERVER = r"/api/server"
API_FALLBACK = r"/api(?:/.*)?"
RUN_LIVE = RUN + r"/live"
STORE_LIVE = r"/api/live"
JUPYTER_SPAWN = r"/api/jupyter/spawn"
JUPYTER_STATUS = r"/api/jupyter/status"
JUPYTER_STOP = r"/api/jupyter/stop"
OPENAPI = r"/api/openapi\.json"

# Routes of the Rust expman-rs server (``exp serve``) that existing scripts call.
EXPERIMENT_METADATA = EXPERIMENT + r"/metadata"
RUN_METADATA = RUN + r"/metadata"
RUN_CONFIG = RUN + r"/config"
ARTIFACT_CONTENT = ARTIFACTS + r"/content"
LOG_STREAM = RUN + r"/log/stream"
VECTORS_STREAM = r"/api/run/(?P<experiment>%s)/(?P<run>%s)/stream/vectors" % (SEGMENT, SEGMENT)
