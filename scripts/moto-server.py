"""moto in server mode, one request at a time: `moto-server.py HOST PORT`.

moto's DynamoDB copies a table when a transaction starts and puts the copy
back when the transaction is cancelled, losing whatever other requests wrote
in the meantime (and leaving stream iterators on the table it replaced).
DynamoDB itself does neither; serving one request at a time keeps moto to
what DynamoDB does, so the tests can race writers the way production does.
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()


def serial(environ, start_response):
    with one_at_a_time:
        return list(app(environ, start_response))


run_simple(host, port, serial, threaded=True)
