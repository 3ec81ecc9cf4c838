"""Reconcile: the backend stores, on its own, the reports collectors kept while they could not
deliver - Azure DevOps run attachments of type ``imagetrail.report`` and GitHub workflow artifacts
``imagetrail-report-<hex>``.

- ``sources``: what one kept report is, and the principal it is ingested with.
- ``azure_devops`` / ``github``: listing and downloading kept reports, and the claims of their run.
- ``lease``: only one process reconciles at a time.
- ``runner``: one reconcile pass over every source; ``scheduler``: when passes run.
- ``status``: pending and reconciled counts for the coverage page.
"""
