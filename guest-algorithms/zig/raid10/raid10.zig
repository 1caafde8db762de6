//! md RAID10 in Zig (`__raid10_find_phys`): near, far and offset copies.
//! Maps identically to the built-in Rust raid10 (tests/polyglot.rs proves it
//! over random geometries).
//!
//! Arguments, as mdadm writes them: `n2` (default), `f2`, `o2`, or any copy
//! count (`n3`, `f3`...). One stripe is one data chunk and its copies.
//!
//! Zig implements the C functions that `wasmraid algo bindings c` declares;
//! `zig translate-c layout.h` turns the header into `layout.zig` (see build.sh
//! and docs/tutorials/zig.md).

const c = @import("layout.zig");

const Geometry = c.exports_wasmraid_layout_algorithm_geometry_t;
const Descriptor = c.exports_wasmraid_layout_algorithm_descriptor_t;
const Kind = enum { near, far, offset };

// The host frees the returned list with free().
extern fn malloc(size: usize) ?[*]u64;

// The instance's configuration; the host makes one instance per array.
var legs: u64 = 0;
var kind: Kind = .near;
var copies: u64 = 2;
/// Rows between far copies: leg chunks / copies for `f`, 1 for `o`.
var stride: u64 = 0;

export fn exports_wasmraid_layout_algorithm_name(ret: *c.layout_string_t) void {
    c.layout_string_dup(ret, "raid10");
}

fn gcd(a: u64, b: u64) u64 {
    return if (b == 0) a else gcd(b, a % b);
}

/// A fixed buffer for error messages: no allocator, no formatting library.
const Message = struct {
    text: [200:0]u8 = undefined,
    len: usize = 0,

    fn add(self: *Message, s: []const u8) void {
        for (s) |ch| {
            if (self.len + 1 >= self.text.len) break;
            self.text[self.len] = ch;
            self.len += 1;
        }
        self.text[self.len] = 0;
    }

    fn addNumber(self: *Message, value: u64) void {
        var digits: [20]u8 = undefined;
        var i: usize = digits.len;
        var n = value;
        while (true) {
            i -= 1;
            digits[i] = @intCast('0' + n % 10);
            n /= 10;
            if (n == 0) break;
        }
        self.add(digits[i..]);
    }
};

fn isSeparator(ch: u8) bool {
    return ch == ',' or ch == ' ' or ch == '\t' or ch == '\n';
}

/// The one layout word (n2, f2, o2...), or an error in `message`.
fn parse(args: []const u8, message: *Message) ?struct { kind: Kind, copies: u64 } {
    var word: []const u8 = "n2";
    var words: usize = 0;
    var i: usize = 0;
    while (i < args.len) {
        while (i < args.len and isSeparator(args[i])) i += 1;
        const start = i;
        while (i < args.len and !isSeparator(args[i])) i += 1;
        if (i > start) {
            word = args[start..i];
            words += 1;
        }
    }
    if (words > 1) {
        message.add("raid10 takes one layout word (n2, f2, o2), got '");
        message.add(args);
        message.add("'");
        return null;
    }
    const k: Kind = switch (if (word.len > 0) word[0] else 0) {
        'n' => .near,
        'f' => .far,
        'o' => .offset,
        else => {
            message.add("unknown raid10 layout '");
            message.add(word);
            message.add("' (expected n2, f2, o2 or another copy count)");
            return null;
        },
    };
    var count: u64 = 0;
    if (word.len < 2 or word.len > 12) {
        message.add("raid10 layout '");
        message.add(word);
        message.add("': copy count is not a number");
        return null;
    }
    for (word[1..]) |ch| {
        if (ch < '0' or ch > '9') {
            message.add("raid10 layout '");
            message.add(word);
            message.add("': copy count is not a number");
            return null;
        }
        count = count * 10 + (ch - '0');
    }
    if (count < 1) {
        message.add("raid10 layout '");
        message.add(word);
        message.add("': needs at least one copy");
        return null;
    }
    return .{ .kind = k, .copies = count };
}

export fn exports_wasmraid_layout_algorithm_configure(g: *Geometry, ret: *Descriptor, err: *c.layout_string_t) bool {
    defer c.exports_wasmraid_layout_algorithm_geometry_free(g);
    var message = Message{};
    const args: []const u8 = if (g.args.len == 0) "" else g.args.ptr[0..g.args.len];
    if (g.legs < 2) {
        message.add("raid10 needs at least 2 legs, got ");
        message.addNumber(g.legs);
        c.layout_string_dup(err, &message.text);
        return false;
    }
    const parsed = parse(args, &message) orelse {
        c.layout_string_dup(err, &message.text);
        return false;
    };
    const n: u64 = g.legs;
    if (parsed.copies > n) {
        message.add("raid10 with ");
        message.addNumber(parsed.copies);
        message.add(" copies needs at least as many legs, got ");
        message.addNumber(n);
        c.layout_string_dup(err, &message.text);
        return false;
    }
    var shortest: u64 = ~@as(u64, 0);
    for (g.leg_chunks.ptr[0..g.leg_chunks.len]) |chunks| shortest = @min(shortest, chunks);
    const near: u64 = if (parsed.kind == .near) parsed.copies else 1;
    const far: u64 = if (parsed.kind == .near) 1 else parsed.copies;
    // After `period` chunks the first copy is back on leg 0.
    const period = n / gcd(n, near);
    const rows = period * near / n;
    legs = n;
    kind = parsed.kind;
    copies = parsed.copies;
    stride = switch (kind) {
        .near => 0,
        .far => shortest / far,
        .offset => 1,
    };
    ret.* = .{
        .data_chunks = 1,
        .replica_chunks = @intCast(copies - 1),
        .parity_chunks = 0,
        .spare_chunks = 0,
        // md's raid10_size: (leg chunks / far) x legs / near data chunks.
        .stripes = (shortest / far) * n / near,
        .period = period,
        .period_advance = if (kind == .offset) rows * far else rows,
        .fault_tolerance = @intCast(copies - 1),
    };
    return true;
}

/// Every slot is three words: leg, chunk on the leg, role (0 data, 1 replica).
fn slot(out: [*]u64, n: *usize, leg: u64, chunk: u64, role: u64) void {
    out[n.*] = leg;
    out[n.* + 1] = chunk;
    out[n.* + 2] = role;
    n.* += 3;
}

export fn exports_wasmraid_layout_algorithm_map_stripes(first: u64, count: u32, ret: *c.layout_list_u64_t) void {
    const words = @as(usize, count) * @as(usize, @intCast(copies)) * 3;
    const out = malloc(@max(words, 1) * 8) orelse @trap();
    var n: usize = 0;
    var s = first;
    while (s < first + count) : (s += 1) {
        if (kind == .near) {
            const t = s * copies;
            var i: u64 = 0;
            while (i < copies) : (i += 1) slot(out, &n, (t + i) % legs, (t + i) / legs, if (i == 0) 0 else 1);
            continue;
        }
        const dev = s % legs;
        var row = s / legs;
        if (kind == .offset) row *= copies;
        slot(out, &n, dev, row, 0);
        var f: u64 = 1;
        while (f < copies) : (f += 1) slot(out, &n, (dev + f) % legs, row + f * stride, 1);
    }
    ret.ptr = out;
    ret.len = n;
}
