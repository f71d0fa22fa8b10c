echo "script ran from $(basename "$(dirname "$0")")"
