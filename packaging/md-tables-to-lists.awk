# Turn Markdown tables into bullet lists, so that man pages fit a terminal (tbl does not wrap
# wide cells). "| key | default | meaning |" rows become "- key (default: D): meaning"; any
# other table becomes "- first cell: header2: cell2; header3: cell3 ...". Everything else
# passes through unchanged.
function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
function cells(line, out,    n, i, parts) {
    sub(/^[ \t]*\|/, "", line); sub(/\|[ \t]*$/, "", line)
    n = split(line, parts, "|")
    for (i = 1; i <= n; i++) out[i] = trim(parts[i])
    return n
}
/^[ \t]*\|/ {
    if (!intable) { intable = 1; nh = cells($0, head); next }
    if ($0 ~ /^[ \t]*\|[ \t:|-]+\|[ \t]*$/) next
    n = cells($0, c)
    if (nh == 3 && head[1] == "key" && head[2] == "default" && head[3] == "meaning") {
        printf "- %s (default: %s): %s\n", c[1], c[2], c[3]
    } else {
        line = "- " c[1] ":"
        for (i = 2; i <= n; i++) line = line " " head[i] ": " c[i] (i < n ? ";" : "")
        print line
    }
    next
}
{ if (intable) { intable = 0 } print }
