"""genevae.pipelines: one package per Kedro pipeline (``nodes.py`` + ``pipeline.py``).

Kedro imports every pipeline module to build the registry, on every ``kedro run``. So that
start-up stays fast, modules under ``pipelines/`` import only numpy, pandas, scipy, kedro and
light genevae modules at the top; libraries that load torch, Lightning, anndata, scanpy,
scikit-learn, gseapy, POT or matplotlib are imported inside the node (or helper) that uses
them, and names needed only for type hints are imported under ``if TYPE_CHECKING:``.
``tests/test_startup_imports.py`` checks this.
"""
