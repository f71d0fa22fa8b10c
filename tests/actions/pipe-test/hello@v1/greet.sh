#!/bin/sh
echo "$1, $2!"
echo "text=$1, $2!" >> "$GITHUB_OUTPUT"
