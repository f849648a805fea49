# Reads a callgrind output file and prints each function's and each library's own (exclusive)
# instruction count, one per line: "function<TAB>count<TAB>name" and "library<TAB>count<TAB>path".
# callgrind_annotate 3.19 prints inclusive counts for serve's threads whatever its options say,
# so wrk-ingest.sh --callgrind reads the file itself.
#
# The format: "ob=", "fn=" name the object and function whose costs follow; "cob=", "cfn=" name a
# callee, and the cost line after "calls=" is that call's inclusive cost, not the caller's own.
# A name appears once as "(id) name" and afterwards as "(id)" alone.
function named(kind, s,   id, rest) {
  if (match(s, /^\([0-9]+\)/)) {
    id = kind substr(s, RSTART, RLENGTH)
    rest = substr(s, RLENGTH + 2)
    if (rest != "") name[id] = rest
    return name[id]
  }
  return s
}
/^ob=/ { obj = named("o", substr($0, 4)); next }
/^cob=/ { named("o", substr($0, 5)); next }
/^fn=/ { fn = named("f", substr($0, 4)); fnobj = obj; next }
/^cfn=/ { named("f", substr($0, 5)); next }
/^calls=/ { call = 1; next }
/^[0-9+*-]/ {
  if (call) { call = 0; next }
  own[fn] += $2
  inobj[fnobj] += $2
  next
}
END {
  for (o in inobj) printf "library\t%d\t%s\n", inobj[o], o
  for (f in own) printf "function\t%d\t%s\n", own[f], f
}
