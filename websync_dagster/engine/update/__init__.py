"""The opt-in newer-wins update path (WEBSYNC_UPDATE_NEWER): after a table's inserts, the rows prod holds by id
whose version dev has newer are updated in prod, in commit units, each unit's before-images on disk first.

candidates.py finds those rows (per-bucket digests of id and version, then the versions of the buckets that
differ); units.py sends them unit by unit: the before-images read and written (engine/run_files.py), then one
transaction under the table's advisory lock that stages the rows, casts them with prod's types (sql/probe.sql)
and updates each row only while prod still holds it as its before-image shows and its version is older
(sql/insert.sql with an UPDATE as its range: a row prod refuses is rejected, one that would clash on another
unique key is skipped under that key); the manifest gets each updated row's hash as the unit left it.
"""
