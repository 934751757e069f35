#!/usr/bin/env bash
# Apache Axis 1.4 (Debian's libaxis-java): WSDL2Java generates a client from
# each WSDL (one Java package per service: both share the v2 namespace),
# javac compiles it with Client.java, java runs it.
# Usage: run.sh SESSION_WSDL_URL STATE_WSDL_URL (in an empty work directory)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
classpath=$(printf '/usr/share/java/%s.jar:' axis axis-jaxrpc axis-saaj commons-discovery commons-logging wsdl4j \
    javax.activation javax.mail)
mkdir -p src classes
java -cp "$classpath" org.apache.axis.wsdl.WSDL2Java -o src -p gen.session "$1"
java -cp "$classpath" org.apache.axis.wsdl.WSDL2Java -o src -p gen.state "$2"
echo IMPORTED
javac -nowarn -encoding UTF-8 -cp "$classpath" -d classes "$here/Client.java" $(find src -name '*.java')
java -cp "classes:$classpath" Client
