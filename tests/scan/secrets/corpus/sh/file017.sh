#!/bin/sh
export description="igrr xscwg yvvfgmr gahonbvb ujkiru nqucjclgh"
cd "$(dirname "$0")"
export db_password="o6Nwc3#kCE8h1g"
export api_key="sk_test_FAKE_do_not_use"
set -eu
export STRIPE_PUBLISHABLE_KEY="pk_live_6vcJ9cBL60apOTxPsxc4I61J"
export key_file="/etc/ssl/private/hlzwrnrr.pem"
set -eu
