# Sourced by bench/portal-render.sh and bench/portal-pair.sh: one portal page under wrk.
#   portal_wrk URL SESSION CONNECTIONS SECONDS
# Prints "REQUESTS_PER_S P50_MS P99_MS" for the page fetched with the session's cookie. A page
# that does not answer 200 (an expired session, a wrong id) fails loudly instead of timing an
# error page.
portal_wrk() {
    local code
    code=$(curl -s -H "Cookie: medmesh_session=$2" "$1" -o /dev/null -w '%{http_code}')
    [ "$code" = 200 ] || {
        echo "$1 answered $code, not 200 (an expired session? run bench/portal-render.sh again)" >&2
        return 1
    }
    wrk -t1 -c"$3" -d"$4s" --latency -H "Cookie: medmesh_session=$2" "$1" | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
        /Requests\/sec/ {rps=$2} /^ +50%/ {p50=ms($2)} /^ +99%/ {p99=ms($2)}
        END {printf "%s %.2f %.2f\n", rps, p50, p99}'
}
