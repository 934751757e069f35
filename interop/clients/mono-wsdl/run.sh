#!/usr/bin/env bash
# Mono's wsdl tool (ASMX-style proxies): one proxy per WSDL, mcs compiles them
# with Client.cs, mono runs it.
# Usage: run.sh SESSION_WSDL_URL STATE_WSDL_URL (in an empty work directory)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wsdl -nologo -namespace:Gen.Session -out:Session.cs "$1"
wsdl -nologo -namespace:Gen.State -out:State.cs "$2"
echo IMPORTED
mcs -nologo -warn:0 -out:client.exe -r:System.Web.Services.dll Session.cs State.cs "$here/Client.cs"
mono client.exe
