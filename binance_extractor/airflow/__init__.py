"""The Airflow boundary: everything that needs Airflow to import or to mean anything.

``dagfactory`` (the DAG families ``dags/`` builds), ``hooks`` (the ``binance`` connection), ``operators``
(the traced KubernetesPodOperator), ``callbacks`` (failure callbacks, freshness deadline), ``setup``
(``setup-airflow``), ``provider`` (the provider entry point) and ``sqlite_connect`` (metadata-DB connect args).
The plain core (client, pipeline, sinks, gaps, CLI commands) imports nothing from here, so pods and the CLI run
the same code with or without a scheduler; ``tests/binance_extractor/test_boundaries.py`` checks it.
"""
