# Embeds tools/trace_report.html in tern-trace as the C string tv_report_html,
# so that the viewer is one binary and its page needs no network.
#   cmake -DIN=trace_report.html -DOUT=trace_report_html.c -P trace_embed.cmake
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUT}" "/* Generated from ${IN}: do not edit. */\nconst char tv_report_html[] = {${bytes}0x00};\n")
