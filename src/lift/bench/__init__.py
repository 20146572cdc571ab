"""One module per benchmark; `lift bench NAME` runs it (see `lift.commands.bench`)."""
