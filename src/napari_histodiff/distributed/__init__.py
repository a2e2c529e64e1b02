"""dask.distributed runners: many jobs, one canvas across workers.

* :mod:`.manifest`, :mod:`.jobs`, :mod:`.runner`: ``histodiff generate-many``,
  one synthesis per row of a CSV manifest, spread over the workers;
* :mod:`.canvas`: one large canvas whose windows are split among workers at
  every step, over a shared zarr store;
* :mod:`.cluster`: a local cluster (CPU or one worker per GPU) or a running
  scheduler.

Nothing here is imported by ``import napari_histodiff``; dask.distributed is
imported only when a runner starts.
"""
