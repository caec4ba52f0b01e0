# Integration: the official OpenAI Node SDK (npm `openai`) drives `sparrow serve` with no
# workarounds. The package is installed into the build tree on first run.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/server_common.sh"
here=$(cd "$(dirname "$0")" && pwd)
npm_packages || { fail "npm install"; finish; }
npm_dir=$NPM_DIR
cp "$here/openai_sdk.mjs" "$npm_dir/openai_sdk.mjs"
want=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["completion"], end="")' "$SH/models/reference/stories260K.json")
start_server sdk -m "$SH/models/stories260K.gguf" --api-key sk-test || exit 1
if node "$npm_dir/openai_sdk.mjs" "$BASE" sk-test "$want"; then pass "OpenAI Node SDK"; else fail "OpenAI Node SDK"; fi
finish
