#!/usr/bin/env bash
# SOAP::WSDL (Debian's libsoap-wsdl-perl): wsdl2perl generates classes from
# each WSDL (one class prefix per service), client.pl uses them.
# Usage: run.sh SESSION_WSDL_URL STATE_WSDL_URL (in an empty work directory)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wsdl2perl -b lib -p Session "$1" > wsdl2perl-session.log
wsdl2perl -b lib -p State "$2" > wsdl2perl-state.log
echo IMPORTED
perl "$here/client.pl"
