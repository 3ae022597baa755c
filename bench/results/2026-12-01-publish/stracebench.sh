#!/bin/bash
BIN=$1
PORT=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
$BIN --listen 127.0.0.1:$PORT --max-connections 20000 >/tmp/sb-server.log 2>&1 &
SP=$!
for i in $(seq 50); do curl -s -o /dev/null -H 'Host: localhost' http://127.0.0.1:$PORT/healthz && break; sleep 0.1; done
(/tmp/herald-bench publish --users 1000 --events 100000 --seed 42 --target herald --url http://127.0.0.1:$PORT --json --no-progress > /tmp/sb.json 2>/tmp/sb.err) &
BP=$!
sleep 1.5
timeout 3 strace -c -f $(for t in $(ls /proc/$SP/task); do echo -p $t; done) -o /tmp/strace.txt 2>/dev/null
wait $BP
kill $SP
python3 -c "
import json;d=json.load(open('/tmp/sb.json'));print('pub/s',d['publish']['per_sec'])"
head -20 /tmp/strace.txt
