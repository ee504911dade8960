"""Google Cloud Storage access shared by the state backend (``substratus.state.gcs``) and the
artifact store (``substratus.runtimes.artifacts_gcs``): the client set-up and what counts as a
transient failure (``substratus.gcs.client``). Neither of them imports the other."""
