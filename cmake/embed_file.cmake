# cmake -DIN=file -DOUT=file.c -DSYMBOL=name -P cmake/embed_file.cmake
# Writes OUT defining `const char SYMBOL[]` (NUL-terminated) and
# `const unsigned long SYMBOL_len` with the bytes of IN, so a resource such
# as serve/web/chat.html ships inside the binary without a runtime lookup.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
get_filename_component(src "${IN}" NAME)
file(WRITE "${OUT}.tmp" "/* Generated from ${src} by cmake/embed_file.cmake; do not edit. */\n"
     "const char ${SYMBOL}[] = {\n${body}0x00};\n"
     "const unsigned long ${SYMBOL}_len = ${len}UL;\n")
file(RENAME "${OUT}.tmp" "${OUT}")
