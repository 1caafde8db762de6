// md RAID5 in C: one XOR parity per stripe, rotated the way md's
// raid5_compute_sector rotates it. Maps identically to the built-in Rust
// raid5 (tests/polyglot.rs proves it over random geometries).
//
// Arguments: left-symmetric (default), left-asymmetric, right-symmetric,
// right-asymmetric, parity-0, parity-n (short forms ls, la, rs, ra).
//
// Built with Debian's clang and wasi-libc against the C bindings that
// `wasmraid algo bindings c` writes (see build.sh and docs/tutorials/c.md).

#include "layout.h"

#include <stdlib.h>
#include <string.h>

typedef exports_wasmraid_layout_algorithm_geometry_t geometry_t;
typedef exports_wasmraid_layout_algorithm_descriptor_t descriptor_t;

enum rotation { LEFT_ASYMMETRIC, RIGHT_ASYMMETRIC, LEFT_SYMMETRIC, RIGHT_SYMMETRIC, PARITY_0, PARITY_N };

static const struct {
    const char *name;
    const char *short_name;
    enum rotation rotation;
} ROTATIONS[] = {
    {"left-symmetric", "ls", LEFT_SYMMETRIC},   {"left-asymmetric", "la", LEFT_ASYMMETRIC},
    {"right-symmetric", "rs", RIGHT_SYMMETRIC}, {"right-asymmetric", "ra", RIGHT_ASYMMETRIC},
    {"parity-0", "parity-first", PARITY_0},     {"parity-n", "parity-last", PARITY_N},
};

// The instance's configuration; the host makes one instance per array.
static uint32_t legs;
static enum rotation rotation = LEFT_SYMMETRIC;

void exports_wasmraid_layout_algorithm_name(layout_string_t *ret) { layout_string_dup(ret, "raid5"); }

// Error messages are built by hand: stdio would pull in WASI imports, and a
// layout component must import nothing.
typedef struct {
    char text[256];
    size_t len;
} message_t;

static void add_text(message_t *m, const char *text, size_t len) {
    for (size_t i = 0; i < len && m->len + 1 < sizeof m->text; i++) m->text[m->len++] = text[i];
    m->text[m->len] = 0;
}

static void add(message_t *m, const char *text) { add_text(m, text, strlen(text)); }

static void add_number(message_t *m, uint64_t n) {
    char digits[21];
    size_t i = sizeof digits;
    do digits[--i] = (char)('0' + n % 10);
    while ((n /= 10) != 0);
    add_text(m, digits + i, sizeof digits - i);
}

// Parses the arguments: words separated by commas or spaces, the first one
// naming the rotation, every one a known name. Returns false with a message.
static bool parse_rotation(const layout_string_t *args, enum rotation *out, message_t *message) {
    bool first = true;
    size_t i = 0;
    while (i < args->len) {
        while (i < args->len && (args->ptr[i] == ',' || args->ptr[i] == ' ')) i++;
        size_t start = i;
        while (i < args->len && args->ptr[i] != ',' && args->ptr[i] != ' ') i++;
        size_t len = i - start;
        if (len == 0) break;
        const char *word = (const char *)args->ptr + start;
        bool known = false;
        for (size_t r = 0; r < sizeof ROTATIONS / sizeof ROTATIONS[0]; r++) {
            const char *names[2] = {ROTATIONS[r].name, ROTATIONS[r].short_name};
            for (int n = 0; n < 2; n++) {
                if (strlen(names[n]) == len && memcmp(names[n], word, len) == 0) {
                    known = true;
                    if (first) *out = ROTATIONS[r].rotation;
                }
            }
        }
        if (!known) {
            add(message, "unknown raid5 layout '");
            add_text(message, word, len);
            add(message, "' (expected left-symmetric, left-asymmetric, right-symmetric, right-asymmetric, parity-0 or parity-n)");
            return false;
        }
        first = false;
    }
    return true;
}

bool exports_wasmraid_layout_algorithm_configure(geometry_t *g, descriptor_t *ret, layout_string_t *err) {
    message_t message = {.len = 0};
    bool ok = false;
    enum rotation parsed = LEFT_SYMMETRIC;
    if (g->legs < 2) {
        add(&message, "raid5 needs at least 2 legs, got ");
        add_number(&message, g->legs);
    } else if (parse_rotation(&g->args, &parsed, &message)) {
        uint64_t shortest = UINT64_MAX;
        for (size_t i = 0; i < g->leg_chunks.len; i++)
            if (g->leg_chunks.ptr[i] < shortest) shortest = g->leg_chunks.ptr[i];
        legs = g->legs;
        rotation = parsed;
        // Parity on a fixed leg repeats every stripe; rotated, every `legs`.
        uint64_t period = (rotation == PARITY_0 || rotation == PARITY_N) ? 1 : legs;
        memset(ret, 0, sizeof *ret);
        ret->data_chunks = legs - 1;
        ret->parity_chunks = 1;
        ret->stripes = shortest;
        ret->period = period;
        ret->period_advance = period;
        ret->fault_tolerance = 1;
        ok = true;
    }
    if (!ok) layout_string_dup(err, message.text);
    exports_wasmraid_layout_algorithm_geometry_free(g);
    return ok;
}

// The leg holding parity in stripe s.
static uint32_t parity_leg(uint64_t s) {
    uint32_t rot = (uint32_t)(s % legs);
    switch (rotation) {
    case LEFT_ASYMMETRIC:
    case LEFT_SYMMETRIC: return legs - 1 - rot;
    case RIGHT_ASYMMETRIC:
    case RIGHT_SYMMETRIC: return rot;
    case PARITY_0: return 0;
    case PARITY_N: return legs - 1;
    }
    return 0;
}

// The leg holding data chunk k of a stripe whose parity is on leg p.
static uint32_t data_leg(uint32_t p, uint32_t k) {
    if (rotation == LEFT_SYMMETRIC || rotation == RIGHT_SYMMETRIC) return (p + 1 + k) % legs;
    return k < p ? k : k + 1;
}

// Every slot is three words: leg, chunk on the leg, role (kind | index << 8).
static uint64_t *slot(uint64_t *out, uint32_t leg, uint64_t chunk, uint64_t kind, uint32_t index) {
    out[0] = leg;
    out[1] = chunk;
    out[2] = kind | (uint64_t)index << 8;
    return out + 3;
}

void exports_wasmraid_layout_algorithm_map_stripes(uint64_t first, uint32_t count, layout_list_u64_t *ret) {
    uint32_t data = legs - 1;
    uint32_t coefficient_words = (data + 3) / 4;
    size_t per_stripe = (size_t)legs * 3 + coefficient_words;
    // The host frees the list with free() after reading it.
    uint64_t *words = malloc((size_t)count * per_stripe * sizeof *words);
    if (words == NULL && count > 0) __builtin_trap();
    uint64_t *out = words;
    for (uint64_t s = first; s < first + count; s++) {
        uint32_t p = parity_leg(s);
        for (uint32_t k = 0; k < data; k++) out = slot(out, data_leg(p, k), s, 0, k);
        out = slot(out, p, s, 2, 0);
        // XOR parity: coefficient 1 for every data chunk, four per word.
        for (uint32_t w = 0; w < coefficient_words; w++) {
            uint64_t word = 0;
            for (uint32_t b = 0; b < 4 && w * 4 + b < data; b++) word |= (uint64_t)1 << (8 * b);
            *out++ = word;
        }
    }
    ret->ptr = words;
    ret->len = (size_t)(out - words);
}
