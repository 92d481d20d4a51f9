/*
 * inspectd_sub: a subscriber of the inspectd event bus in C, against libzmq only.
 *
 * It decodes the documented messages (docs/events.md, schema version 2) with a small JSON
 * parser of its own, prints one key=value line per message, and reports gaps in each
 * publisher's sequence numbers (`seq` when it takes everything, `kind_seq` per kind when
 * topics filter) -- what a PLC gateway or a logger in C needs.
 *
 *   inspectd_sub [-n COUNT] ENDPOINT [TOPIC ...]
 *
 * ENDPOINT is connected to (tcp://host:5556); TOPICs are prefixes such as "verdict/" or
 * "verdict/cam0/" (default: everything). Exits after COUNT messages when -n is given.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* ---- a minimal JSON reader: enough for one payload (objects, arrays, strings, numbers) ---- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jnode {
    enum jtype type;
    const char *key;          /* member name when inside an object */
    char *str;                /* J_STR value, J_NUM / J_BOOL text */
    struct jnode *child;      /* first element / member */
    struct jnode *next;       /* next sibling */
} jnode;

typedef struct {
    const char *p, *end;
    jnode *nodes;
    size_t used, cap;
    char *strings;            /* decoded strings, NUL-terminated, back to back */
    size_t sused, scap;
} jparser;

static jnode *new_node(jparser *ps) {
    if (ps->used == ps->cap) return NULL;
    jnode *n = &ps->nodes[ps->used++];
    memset(n, 0, sizeof *n);
    return n;
}

static void skip_ws(jparser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static char *parse_string(jparser *ps) {
    if (ps->p >= ps->end || *ps->p != '"') return NULL;
    ps->p++;
    char *out = ps->strings + ps->sused;
    while (ps->p < ps->end && *ps->p != '"') {
        char c = *ps->p++;
        if (c == '\\') {
            if (ps->p >= ps->end) return NULL;
            char e = *ps->p++;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': /* keep non-ASCII escapes as '?': no field we read needs them */
                if (ps->end - ps->p < 4) return NULL;
                ps->p += 4; c = '?'; break;
            default: c = e;   /* \" \\ \/ */
            }
        }
        if (ps->sused + 1 >= ps->scap) return NULL;
        ps->strings[ps->sused++] = c;
    }
    if (ps->p >= ps->end) return NULL;
    ps->p++;                                   /* closing quote */
    ps->strings[ps->sused++] = '\0';
    return out;
}

static jnode *parse_value(jparser *ps, int depth);

static jnode *parse_container(jparser *ps, int depth, int is_obj) {
    jnode *n = new_node(ps), *last = NULL;
    if (!n) return NULL;
    n->type = is_obj ? J_OBJ : J_ARR;
    ps->p++;                                   /* [ or { */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == (is_obj ? '}' : ']')) { ps->p++; return n; }
    for (;;) {
        const char *key = NULL;
        skip_ws(ps);
        if (is_obj) {
            if (!(key = parse_string(ps))) return NULL;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p++ != ':') return NULL;
        }
        jnode *v = parse_value(ps, depth + 1);
        if (!v) return NULL;
        v->key = key;
        if (last) last->next = v; else n->child = v;
        last = v;
        skip_ws(ps);
        if (ps->p >= ps->end) return NULL;
        if (*ps->p == ',') { ps->p++; continue; }
        if (*ps->p == (is_obj ? '}' : ']')) { ps->p++; return n; }
        return NULL;
    }
}

static jnode *parse_value(jparser *ps, int depth) {
    if (depth > 32) return NULL;
    skip_ws(ps);
    if (ps->p >= ps->end) return NULL;
    char c = *ps->p;
    if (c == '{' || c == '[') return parse_container(ps, depth, c == '{');
    jnode *n = new_node(ps);
    if (!n) return NULL;
    if (c == '"') {
        n->type = J_STR;
        n->str = parse_string(ps);
        return n->str ? n : NULL;
    }
    const char *start = ps->p;
    while (ps->p < ps->end && !strchr(",]} \t\r\n", *ps->p)) ps->p++;
    size_t len = (size_t)(ps->p - start);
    if (len == 0 || ps->sused + len + 1 >= ps->scap) return NULL;
    n->str = ps->strings + ps->sused;
    memcpy(n->str, start, len);
    n->str[len] = '\0';
    ps->sused += len + 1;
    if (!strcmp(n->str, "null")) n->type = J_NULL;
    else if (!strcmp(n->str, "true") || !strcmp(n->str, "false")) n->type = J_BOOL;
    else n->type = J_NUM;
    return n;
}

static jnode *get(const jnode *obj, const char *key) {
    if (!obj || obj->type != J_OBJ) return NULL;
    for (jnode *c = obj->child; c; c = c->next)
        if (c->key && !strcmp(c->key, key)) return c;
    return NULL;
}

/* Numbers are kept as text: nanosecond times need all 64 bits, which a double does not have. */
static long long get_int(const jnode *obj, const char *key, long long dflt) {
    jnode *n = get(obj, key);
    return (n && n->type == J_NUM) ? strtoll(n->str, NULL, 10) : dflt;
}

static double get_num(const jnode *obj, const char *key) {
    jnode *n = get(obj, key);
    return (n && n->type == J_NUM) ? strtod(n->str, NULL) : 0.0;
}

static const char *get_str(const jnode *obj, const char *key) {
    jnode *n = get(obj, key);
    return (n && (n->type == J_STR || n->type == J_BOOL)) ? n->str : (n && n->type == J_NULL ? "null" : "?");
}

/* ---- gap detection ----
 * Subscribed to everything: `seq` per publisher (it counts every message).
 * Filtered by topic: `kind_seq` per (publisher, kind), for the kinds the filters take in full
 * for that camera (a filter down to the detail, "verdict/cam0/reject", cannot tell losses from
 * filtering: such kinds are not checked), and each heartbeat's `next_kind_seq`, so that the loss
 * of a kind's last messages shows within one heartbeat interval (docs/events.md). */

static int ntopics;
static char **topics;

static int takes_all(void) {
    if (ntopics == 0) return 1;
    for (int i = 0; i < ntopics; i++) if (topics[i][0] == '\0') return 1;
    return 0;
}

/* Whether the subscription receives every message of KIND from CAMERA ("KIND/CAMERA/" has a
 * subscribed prefix). */
static int covers(const char *kind, const char *camera) {
    char full[256];
    snprintf(full, sizeof full, "%s/%s/", kind, camera);
    for (int i = 0; i < ntopics; i++)
        if (!strncmp(full, topics[i], strlen(topics[i]))) return 1;
    return ntopics == 0;
}

#define MAX_TRACKS 1024
static struct { char pub[64]; char kind[32]; long long last; } tracks[MAX_TRACKS];
static int ntracks;

/* The last number of (publisher, kind); kind "" stands for `seq`. NULL when the table is full. */
static long long *track(const char *publisher, const char *kind, int *is_new) {
    for (int i = 0; i < ntracks; i++)
        if (!strcmp(tracks[i].pub, publisher) && !strcmp(tracks[i].kind, kind)) { *is_new = 0; return &tracks[i].last; }
    if (ntracks == MAX_TRACKS) return NULL;
    snprintf(tracks[ntracks].pub, sizeof tracks[ntracks].pub, "%s", publisher);
    snprintf(tracks[ntracks].kind, sizeof tracks[ntracks].kind, "%s", kind);
    *is_new = 1;
    return &tracks[ntracks++].last;
}

static void gap(const char *publisher, const char *camera, const char *kind, long long expected, long long received) {
    if (*kind)
        printf("GAP publisher=%s camera=%s kind=%s expected=%lld received=%lld missing=%lld\n",
               publisher, camera, kind, expected, received, received - expected);
    else
        printf("GAP publisher=%s camera=%s expected=%lld received=%lld missing=%lld\n",
               publisher, camera, expected, received, received - expected);
}

/* One number: the first of a (publisher, kind) starts its count; a jump is a loss. */
static void check_number(const char *publisher, const char *camera, const char *kind, long long n) {
    int is_new;
    long long *last = n < 0 ? NULL : track(publisher, kind, &is_new);
    if (!last) return;
    if (!is_new && n > *last + 1) gap(publisher, camera, kind, *last + 1, n);
    if (is_new || n > *last) *last = n;
}

static void check_seq(const jnode *m) {
    const char *publisher = get_str(m, "publisher"), *camera = get_str(m, "camera"), *kind = get_str(m, "kind");
    if (takes_all()) {
        check_number(publisher, camera, "", get_int(m, "seq", -1));
        return;
    }
    if (!strcmp(kind, "heartbeat")) {           /* what each kind's next message will carry */
        jnode *next = get(m, "next_kind_seq");
        for (jnode *k = next && next->type == J_OBJ ? next->child : NULL; k; k = k->next) {
            if (!k->key || !strcmp(k->key, "heartbeat") || k->type != J_NUM || !covers(k->key, camera)) continue;
            long long n = strtoll(k->str, NULL, 10);
            int is_new;
            long long *last = track(publisher, k->key, &is_new);
            if (!last) continue;
            if (!is_new && n - 1 > *last) gap(publisher, camera, k->key, *last + 1, n);
            if (is_new || n - 1 > *last) *last = n - 1;   /* earlier ones predate us, or were just reported */
        }
    }
    if (covers(kind, camera)) check_number(publisher, camera, kind, get_int(m, "kind_seq", -1));
}

static void print_message(const jnode *m, size_t extra_bytes) {
    const char *kind = get_str(m, "kind");
    long long seq = get_int(m, "seq", -1);
    const char *camera = get_str(m, "camera");
    long long schema = get_int(m, "schema", -1);
    if (schema < 1 || schema > 3)          /* 2 and 3 only added kinds and fields */
        printf("WARN unknown schema version %lld\n", get_int(m, "schema", -1));
    if (!strcmp(kind, "verdict")) {
        jnode *defects = get(m, "defects");
        int n = 0;
        for (jnode *d = defects ? defects->child : NULL; d; d = d->next) n++;
        printf("verdict seq=%lld camera=%s frame=%lld status=%s position_m=%.6f deadline_ns=%lld until_ns=%lld late=%s defects=%d\n",
               seq, camera, get_int(m, "frame", -1), get_str(m, "status"), get_num(m, "strip_position_m"),
               get_int(m, "gate_deadline_wall_ns", 0), get_int(m, "gate_until_wall_ns", 0), get_str(m, "late"), n);
        for (jnode *d = defects ? defects->child : NULL; d; d = d->next) {
            jnode *box = get(d, "box");
            double b[4] = {0, 0, 0, 0};
            int i = 0;
            for (jnode *v = box ? box->child : NULL; v && i < 4; v = v->next) b[i++] = v->str ? strtod(v->str, NULL) : 0.0;
            printf("  defect class=%s score=%.4f box=%.1f,%.1f,%.1f,%.1f area_px=%lld branch=%s\n",
                   get_str(d, "class"), get_num(d, "score"), b[0], b[1], b[2], b[3],
                   get_int(d, "area_px", 0), get_str(d, "branch"));
        }
    } else if (!strcmp(kind, "defect")) {
        printf("defect seq=%lld camera=%s frame=%lld verdict_seq=%lld class=%s score=%.4f crop_bytes=%zu\n",
               seq, camera, get_int(m, "frame", -1), get_int(m, "verdict_seq", -1), get_str(m, "class"),
               get_num(m, "score"), extra_bytes);
    } else if (!strcmp(kind, "uninspected")) {
        printf("uninspected seq=%lld camera=%s first=%lld last=%lld count=%lld reason=%s deadline_ns=%lld until_ns=%lld\n",
               seq, camera, get_int(m, "first_frame", -1), get_int(m, "last_frame", -1), get_int(m, "count", 0),
               get_str(m, "reason"), get_int(m, "gate_deadline_wall_ns", 0), get_int(m, "gate_until_wall_ns", 0));
    } else if (!strcmp(kind, "heartbeat")) {
        printf("heartbeat seq=%lld camera=%s interval_s=%.3f last_frame=%lld\n",
               seq, camera, get_num(m, "interval_s"), get_int(m, "last_frame", -1));
    } else if (!strcmp(kind, "status")) {
        jnode *bus = get(m, "bus");
        printf("status seq=%lld camera=%s sent=%lld queue_full=%lld\n",
               seq, camera, get_int(bus, "sent", -1), get_int(bus, "queue_full", -1));
    } else if (!strcmp(kind, "coil_start") || !strcmp(kind, "coil_end")) {
        printf("%s seq=%lld camera=%s coil=%s\n", kind, seq, camera, get_str(m, "coil"));
    } else if (!strcmp(kind, "alarm")) {
        printf("alarm seq=%lld camera=%s id=%lld state=%s class=%s pitch_m=%.4f cross_mm=%.1f repeats=%lld\n",
               seq, camera, get_int(m, "alarm_id", -1), get_str(m, "state"), get_str(m, "class"),
               get_num(m, "pitch_m"), get_num(m, "cross_mm"), get_int(m, "repeats", 0));
    } else {
        printf("WARN unknown kind %s seq=%lld\n", kind, seq);
    }
}

int main(int argc, char **argv) {
    long count = -1;
    int argi = 1;
    if (argi + 1 < argc && !strcmp(argv[argi], "-n")) { count = strtol(argv[argi + 1], NULL, 10); argi += 2; }
    if (argi >= argc) {
        fprintf(stderr, "usage: %s [-n COUNT] ENDPOINT [TOPIC ...]\n", argv[0]);
        return 2;
    }
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    if (zmq_connect(sub, argv[argi]) != 0) {
        fprintf(stderr, "inspectd_sub: address '%s': %s\n", argv[argi], zmq_strerror(errno));
        return 2;
    }
    topics = argv + argi + 1;
    ntopics = argc - argi - 1;
    if (ntopics == 0) zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    for (int i = 0; i < ntopics; i++) zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topics[i], strlen(topics[i]));

    static jnode nodes[4096];
    static char strings[1 << 20];
    static char payload[1 << 20];
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (long received = 0; count < 0 || received < count; received++) {
        zmq_msg_t part;
        int nparts = 0;
        size_t plen = 0, extra = 0;
        int more = 1;
        while (more) {                         /* topic, payload, optional JPEG crop */
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, sub, 0) < 0) {
                fprintf(stderr, "inspectd_sub: receive failed: %s\n", zmq_strerror(errno));
                return 1;
            }
            if (nparts == 1) {
                plen = zmq_msg_size(&part) < sizeof payload ? zmq_msg_size(&part) : 0;
                memcpy(payload, zmq_msg_data(&part), plen);
            } else if (nparts >= 2) {
                extra += zmq_msg_size(&part);
            }
            more = zmq_msg_more(&part);
            zmq_msg_close(&part);
            nparts++;
        }
        jparser ps = {payload, payload + plen, nodes, 0, sizeof nodes / sizeof nodes[0], strings, 0, sizeof strings};
        jnode *m = plen ? parse_value(&ps, 0) : NULL;
        if (!m || m->type != J_OBJ) {
            printf("WARN undecodable payload (%zu bytes)\n", plen);
            continue;
        }
        check_seq(m);
        print_message(m, extra);
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return 0;
}
