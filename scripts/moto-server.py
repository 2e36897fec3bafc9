"""moto in server mode, kept to what DynamoDB does: `moto-server.py HOST PORT`.

moto's DynamoDB copies a table when a transaction starts, writes the
transaction's items one by one, and puts the copy back when one of them is
refused. That loses whatever other requests wrote in the meantime, and it
leaves the stream records of the refused transaction's other items in the
stream shard that open iterators still read (phantom events). DynamoDB
itself does neither. So here requests are served one at a time, and a
refused transaction's stream records are taken back from the shard that
stays the table's.

And DynamoDB lets a table whose stream was disabled enable a new one (a
new stream, holding nothing of before); moto refuses for good once a table
had a stream. Here disabling forgets the stream, so that it can be enabled
again.
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

from moto.dynamodb.models import DynamoDBBackend

host, port = sys.argv[1], int(sys.argv[2])
transact_write_items = DynamoDBBackend.transact_write_items


def all_or_nothing(self, transact_items):
    shards = {name: (table.stream_shard, len(table.stream_shard.items))
              for name, table in self.tables.items() if table.stream_shard is not None}
    try:
        return transact_write_items(self, transact_items)
    except Exception:
        for name, (shard, length) in shards.items():
            del shard.items[length:]
            table = self.tables.get(name)
            if table is not None:
                table.stream_shard, shard.table = shard, table
        raise


DynamoDBBackend.transact_write_items = all_or_nothing
update_table_streams = DynamoDBBackend.update_table_streams


def streams_enabled_again(self, table, stream_specification):
    update_table_streams(self, table, stream_specification)
    if not table.stream_specification.get("StreamEnabled"):
        table.latest_stream_label = None
        table.stream_shard = None


DynamoDBBackend.update_table_streams = streams_enabled_again
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()


def serial(environ, start_response):
    with one_at_a_time:
        return list(app(environ, start_response))


run_simple(host, port, serial, threaded=True)
