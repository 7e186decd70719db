"""Rule gather_cache: check the shards and write manifest.json and labels.npy."""
from pathlib import Path

from saesuite.cache.format import write_manifest
from saesuite.cache.verify import verify_cache
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    out_dir = Path(snakemake.output.manifest).parent
    write_manifest(out_dir, snakemake.params.n_shards)
    manifest = verify_cache(out_dir, checksums=True, finite=True)
    print(f"{out_dir}: {manifest['n']} rows x {manifest['d']} in {len(manifest['shards'])} shards, verified")
