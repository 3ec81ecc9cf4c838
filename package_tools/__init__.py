"""Build tools for the Azure DevOps extension: vendor the collector's wheels, package the .vsix.

Run from the repository root: ``python -m package_tools vendor`` and
``python -m package_tools build --backend-url URL --audience AUD --publisher P``.
"""
