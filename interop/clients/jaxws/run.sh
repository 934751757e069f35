#!/usr/bin/env bash
# JAX-WS RI 2.3 (Debian's jaxws): wsimport generates a client from each WSDL
# (one Java package per service: both services share the v2 namespace), javac
# compiles it with Client.java, java runs it.
# Usage: run.sh SESSION_WSDL_URL STATE_WSDL_URL (in an empty work directory)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p src classes
wsimport -keep -Xnocompile -s src -d classes -p gen.session "$1"
wsimport -keep -Xnocompile -XadditionalHeaders -s src -d classes -p gen.state "$2"
echo IMPORTED
classpath=/usr/share/jaxws/lib/jaxws-rt.jar:/usr/share/jaxws/lib/jaxws-api.jar:/usr/share/jaxws/lib/jaxb-api.jar
javac -nowarn -encoding UTF-8 -cp "$classpath" -d classes "$here/Client.java" $(find src -name '*.java')
java -cp "classes:$classpath" Client
