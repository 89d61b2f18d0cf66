"""Load, validate and expand a manifest (see schemas/manifest.schema.json) into a ``Project``.

Passes, every problem collected before anything is reported (``problems``):

1. ``load``: the file (a regular file, at most 10 MiB, UTF-8) and its YAML,
   composed into nodes so each value keeps its line and column, with budgets
   for values, nesting and aliases.
2. ``schema``: the JSON Schema, each error mapped back to the node it is about.
3. ``rules``: sections (references with did-you-mean, credentials, language
   tags, text length), ``inputs`` (files exist, are regular, readable media;
   probed locally through ``hashing.HashCache``, never the network).
4. ``expand``: job matrices into cells, what each provider kind accepts, voice
   ids; ``outputs``: templates, rendered paths and the output folder; then
   identical requests merge into content-addressed jobs.
"""

from lipbatch.manifest.expand import ACT_TWO_SECONDS, MAX_OUTPUTS, TTS_CHARS_PER_SECOND, job_key
from lipbatch.manifest.load import MAX_ALIAS_NODES, MAX_DEPTH, MAX_MANIFEST_BYTES, MAX_NODES, read_document
from lipbatch.manifest.outputs import TEMPLATE_FIELDS
from lipbatch.manifest.problems import MAX_PROBLEMS, ManifestProblems, Problem, did_you_mean, format_path
from lipbatch.manifest.project import default_paths, load_project
from lipbatch.manifest.rules import DEFAULT_CONCURRENCY, MAX_TEXT_CHARS, TEXT_CHARS_BY_KIND
from lipbatch.manifest.schema import pixverse_speakers

__all__ = [
    "ACT_TWO_SECONDS", "DEFAULT_CONCURRENCY", "MAX_ALIAS_NODES", "MAX_DEPTH", "MAX_MANIFEST_BYTES", "MAX_NODES",
    "MAX_OUTPUTS", "MAX_PROBLEMS", "MAX_TEXT_CHARS", "TEMPLATE_FIELDS", "TEXT_CHARS_BY_KIND",
    "TTS_CHARS_PER_SECOND", "ManifestProblems", "Problem", "default_paths", "did_you_mean", "format_path",
    "job_key", "load_project", "pixverse_speakers", "read_document",
]
