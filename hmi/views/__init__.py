"""HMI pages: function views that parse, call one selector or service, and render."""
