"""Runs the code blocks of one Markdown page top to bottom, as a reader would: `python` blocks in
one namespace in this process, `bash` blocks in `bash -euo pipefail`, all in the current directory.

Usage: python tests/_run_page.py BLOCKS.json, where the file lists {"lang", "code", "where"}.
Exits 1 at the first block that fails, naming it.
"""

import json
import subprocess
import sys
import traceback


def main(path: str) -> int:
    with open(path) as file:
        blocks = json.load(file)
    namespace = {"__name__": "__main__"}
    for block in blocks:
        print(f"--- {block['where']} ({block['lang']})", flush=True)
        if block["lang"] == "python":
            try:
                exec(compile(block["code"], block["where"], "exec"), namespace)
            except BaseException:
                traceback.print_exc()
                print(f"FAILED: {block['where']}", flush=True)
                return 1
        else:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]])
            if done.returncode != 0:
                print(f"FAILED: {block['where']} exited {done.returncode}", flush=True)
                return 1
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
