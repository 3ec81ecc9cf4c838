"""What the API accepts and answers, as typed models: the explorer filters, explorer rows, trails, trace
answers, coverage, pipelines, remediation and owners, the write routes' answers, registry events, and the export
columns. Queries build them; the API, the web pages and the CLI read them. Pydantic and the standard library only:
nothing here touches the database."""
