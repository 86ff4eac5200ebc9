"""`tsva scan`: a whole slide through the service.

manifest   the scanner's manifest (CSV or JSON): tiles, positions, shot files, defocus offsets
simulate   a two-shot scan simulated from a large in-focus image (needs tsva-export)
layout     which slide pixels each tile owns (nearest tile centre: seams midway in the overlaps)
canvas     the slide's pixels on disk while scanning (bounded memory, resumable), and its pyramid
writers    OME-TIFF (SubIFD pyramid) and a generic tiled pyramidal TIFF (OpenSlide) from the canvas
report     the per-tile QC CSV, the focus map PNG, the summary
run        streaming the pairs through FuseTiles and putting it all together
"""
