"""The student's side of autograde, shipped in the kit: ``check`` (selfcheck), ``submit``,
``make lab``'s workspace and the kit's stored practice cases. It imports the sandbox and the
integrity scans, never the batch or the authoring (the kit has neither)."""
