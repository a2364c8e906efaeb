"""Message templates, one module per concern and caller.

``spec`` (what a template is), ``files`` (load and validate a YAML/JSON file: the CLI),
``publishing`` (write versions, the routing rule: the CLI and the control workflows), ``sandbox``
and ``rendering`` (the Jinja sandbox and the compiled-template cache: the delivery workers, which
import nothing else of this package).
"""
