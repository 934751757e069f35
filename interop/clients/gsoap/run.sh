#!/usr/bin/env bash
# gSOAP 2.8 (C++): wsdl2h + soapcpp2 generate a proxy from each WSDL, g++
# compiles it; one program per service, as each WSDL has its own client.
# Usage: run.sh SESSION_WSDL_URL STATE_WSDL_URL (in an empty work directory)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cat /usr/share/gsoap/WS/typemap.dat "$here/typemap.dat" > typemap.dat

generate() {  # generate DIR WSDL_URL
    mkdir -p "$1"
    wsdl2h -t typemap.dat -o "$1/service.h" "$2" > "$1/wsdl2h.log" 2>&1 || { cat "$1/wsdl2h.log" >&2; return 1; }
    (cd "$1" && soapcpp2 -j -C -x -I/usr/share/gsoap/import service.h > soapcpp2.log 2>&1) \
        || { cat "$1/soapcpp2.log" >&2; return 1; }
}
generate session "$1"
generate state "$2"
echo IMPORTED

build() {  # build DIR PROGRAM
    g++ -O0 -w -I"$1" -o "$1/$2" "$here/$2.cpp" "$1"/soapC.cpp "$1"/soap*Proxy.cpp -lgsoap++
}
build session login & session_build=$!
build state gotostate & state_build=$!
wait "$session_build" && wait "$state_build"

session/login | tee login.out
token="$(sed -n 's/^SESSION //p' login.out)"
state/gotostate "$token"
