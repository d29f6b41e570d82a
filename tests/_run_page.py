"""Runs the code blocks of one Markdown page top to bottom, as a reader would: `python` blocks in
one namespace in this process, `bash` blocks in `bash -euo pipefail`, all in the current directory.

Usage: python tests/_run_page.py BLOCKS.json [OUTPUTS.json], where BLOCKS.json lists {"lang", "code",
"where"}. What each block writes to standard output (file descriptor 1: Python's prints, the bash
commands', and those of any process a block starts; not stderr) is echoed and, with OUTPUTS.json,
written there after each block as a list of {"where", "stdout"}: tests/test_pages.py compares it with
the `text` block that follows the code block on the page.
Exits 1 at the first block that fails, naming it.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import traceback


@contextlib.contextmanager
def captured_stdout(into: list):
    """Within the block, file descriptor 1 goes to a temporary file; afterwards its text is appended to
    `into` and written to the real standard output."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as file:
        os.dup2(file.fileno(), 1)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            file.seek(0)
            data = file.read()
            into.append(data.decode(errors="replace"))
            os.write(1, data)


def main(path: str, outputs_path: str | None = None) -> int:
    with open(path) as file:
        blocks = json.load(file)
    sys.stdout.reconfigure(line_buffering=True)  # prints and a subprocess' lines in the order written
    namespace = {"__name__": "__main__"}
    outputs = []
    for block in blocks:
        print(f"--- {block['where']} ({block['lang']})", flush=True)
        stdout: list[str] = []
        failed = None
        with captured_stdout(stdout):
            if block["lang"] == "python":
                try:
                    exec(compile(block["code"], block["where"], "exec"), namespace)
                except BaseException:
                    failed = traceback.format_exc()
            else:
                done = subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]])
                if done.returncode != 0:
                    failed = f"exited {done.returncode}"
        outputs.append({"where": block["where"], "stdout": stdout[0]})
        if outputs_path:
            with open(outputs_path, "w") as file:
                json.dump(outputs, file)
        if failed is not None:
            print(failed, flush=True)
            print(f"FAILED: {block['where']}", flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
