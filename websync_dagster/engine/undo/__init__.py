"""``websync undo RUN_ID``: a run's changes to prod taken back, from its manifest and before-images
(engine/run_files.py): the rows it inserted deleted, the rows it updated restored, the rows an undo deleted
inserted again, but only rows prod still holds exactly as that run left them (their hash), and a row another prod
row references is never deleted (unless it goes too: rows of one unit referencing each other go together). Each
is listed with the reason when left alone. A unit of the run whose commit it never saw (killed as it committed) is
undone where prod holds its rows as it left them.

decide.py says per row what to do, from prod's rows now; apply.py does it per table, in commit units under the
table's advisory lock (deletes in reverse foreign-key order, restores and inserts in foreign-key order), the
undo's own before-images first, then its manifest before each unit commits, so that an undo can be undone.
"""
