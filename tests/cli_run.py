"""The command line run in process, for the CLI tests: exit code, stdout, stderr."""

import pytest

from modelprint.cli import main


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err
