# Writes OUT, a C++ source defining `extern const char* const SYMBOL` = the text of IN.
file(READ ${IN} content)
set(delim "wf_embed")
file(WRITE ${OUT} "extern const char* const ${SYMBOL};\nconst char* const ${SYMBOL} = R\"${delim}(${content})${delim}\";\n")
