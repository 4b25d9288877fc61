#include "index/filter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/status.h"

/* Hostile filters could nest without end; real ones are a few levels deep. */
#define FILTER_MAX_DEPTH 32
#define FILTER_MAX_DEPTH_TEXT "32" /* the same number, for messages */

typedef enum { N_ALL, N_AND, N_OR, N_NOT, N_FIELD } node_kind;
typedef enum { OP_EQ, OP_NE, OP_GT, OP_GTE, OP_LT, OP_LTE, OP_IN, OP_NIN, OP_EXISTS } op_kind;

struct filter {
    node_kind kind;
    filter **kids; /* N_AND, N_OR: all; N_NOT: one */
    size_t nkids, kids_cap;
    char **path;   /* N_FIELD: the dot path, split */
    size_t npath;
    op_kind op;
    json_t *operand; /* owned copy */
};

static const struct {
    const char *name;
    op_kind op;
} field_ops[] = {
    {"$eq", OP_EQ}, {"$ne", OP_NE}, {"$gt", OP_GT},   {"$gte", OP_GTE},      {"$lt", OP_LT},
    {"$lte", OP_LTE}, {"$in", OP_IN}, {"$nin", OP_NIN}, {"$exists", OP_EXISTS},
};

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* ---- compiling ---------------------------------------------------------------------------- */

typedef struct {
    char *err;
    size_t errlen;
    char where[512]; /* "filter.owner.city.$gt" */
} compiler;

static int fail_at(compiler *c, const char *fmt, const char *a, const char *b) {
    char msg[384];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    return is_fail(c->err, c->errlen, IS_ERR_INVALID, "%s: %s", c->where, msg);
}

/* Appends ".key" or "[i]" to the location for the duration of a nested compile. */
static size_t where_push(compiler *c, const char *fmt, const char *key, size_t index) {
    size_t len = strlen(c->where);
    if (key) snprintf(c->where + len, sizeof c->where - len, fmt, key);
    else snprintf(c->where + len, sizeof c->where - len, fmt, index);
    return len;
}

static void where_pop(compiler *c, size_t len) { c->where[len] = 0; }

static filter *node_new(node_kind kind) {
    filter *f = calloc(1, sizeof *f);
    if (f) f->kind = kind;
    return f;
}

/* Kids are appended one at a time; the array doubles, so n terms cost O(n), not O(n^2). */
static int add_kid(filter *parent, filter *kid) {
    if (parent->nkids == parent->kids_cap) {
        size_t cap = parent->kids_cap ? parent->kids_cap * 2 : 4;
        filter **k = realloc(parent->kids, sizeof *k * cap);
        if (!k) return -1;
        parent->kids = k;
        parent->kids_cap = cap;
    }
    parent->kids[parent->nkids++] = kid;
    return 0;
}

static int compile_object(compiler *c, const json_t *spec, int depth, filter **out);

/* Hands kid (possibly half-built after a failed compile) to parent, so that freeing the parent
 * frees it, and passes the compile status on. */
static int adopt(compiler *c, filter *parent, filter *kid, int rc) {
    if (kid && add_kid(parent, kid)) {
        filter_free(kid);
        return is_fail(c->err, c->errlen, IS_ERR_NOMEM, "out of memory");
    }
    return rc;
}

static int split_path(compiler *c, const char *key, filter *f) {
    if (!*key) return fail_at(c, "empty field name", NULL, NULL);
    size_t n = 1;
    for (const char *p = key; *p; p++) n += *p == '.';
    f->path = calloc(n, sizeof *f->path);
    if (!f->path) return is_fail(c->err, c->errlen, IS_ERR_NOMEM, "out of memory");
    const char *start = key;
    for (size_t i = 0; i < n; i++) {
        const char *dot = strchr(start, '.');
        size_t len = dot ? (size_t)(dot - start) : strlen(start);
        if (len == 0) return fail_at(c, "field path \"%s\" has an empty part", key, NULL);
        f->path[i] = strndup(start, len);
        if (!f->path[i]) return is_fail(c->err, c->errlen, IS_ERR_NOMEM, "out of memory");
        f->npath = i + 1;
        start = dot ? dot + 1 : start + len;
    }
    return IS_OK;
}

static int field_node(compiler *c, const char *key, op_kind op, const json_t *operand, filter **out) {
    filter *f = node_new(N_FIELD);
    if (!f) return is_fail(c->err, c->errlen, IS_ERR_NOMEM, "out of memory");
    *out = f;
    f->op = op;
    f->operand = json_deep_copy(operand);
    if (!f->operand) return is_fail(c->err, c->errlen, IS_ERR_NOMEM, "out of memory");
    return split_path(c, key, f);
}

static int check_operand(compiler *c, op_kind op, const json_t *v) {
    switch (op) {
    case OP_GT:
    case OP_GTE:
    case OP_LT:
    case OP_LTE:
        if (!json_is_number(v) && !json_is_string(v))
            return fail_at(c, "needs a number or a string, not %s", type_name(v), NULL);
        return IS_OK;
    case OP_IN:
    case OP_NIN:
        if (!json_is_array(v)) return fail_at(c, "needs an array of values, not %s", type_name(v), NULL);
        return IS_OK;
    case OP_EXISTS:
        if (!json_is_boolean(v)) return fail_at(c, "needs true or false, not %s", type_name(v), NULL);
        return IS_OK;
    default:
        return IS_OK;
    }
}

/* {"$gte": 2, "$lt": 10} on field key: an AND of one node per operator. */
static int compile_field_ops(compiler *c, const char *key, const json_t *ops, int depth, filter **out) {
    filter *all = node_new(N_AND);
    if (!all) return is_fail(c->err, c->errlen, IS_ERR_NOMEM, "out of memory");
    *out = all;
    const char *op_name;
    json_t *operand;
    json_object_foreach((json_t *)ops, op_name, operand) {
        size_t mark = where_push(c, ".%s", op_name, 0);
        filter *kid = NULL;
        int rc;
        if (!strcmp(op_name, "$not")) {
            if (!json_is_object(operand) || json_object_size(operand) == 0)
                return fail_at(c, "needs an object of operators, such as {\"$gt\": 5}", NULL, NULL);
            const char *k;
            json_t *v;
            json_object_foreach(operand, k, v) if (k[0] != '$') return fail_at(
                c, "takes operators, not the field \"%s\"", k, NULL);
            if (depth >= FILTER_MAX_DEPTH) return fail_at(c, "nested too deeply", NULL, NULL);
            filter *inner = NULL;
            kid = node_new(N_NOT);
            if (!kid) return is_fail(c->err, c->errlen, IS_ERR_NOMEM, "out of memory");
            rc = compile_field_ops(c, key, operand, depth + 1, &inner);
            rc = adopt(c, kid, inner, rc);
        } else {
            size_t i = 0, n = sizeof field_ops / sizeof *field_ops;
            while (i < n && strcmp(field_ops[i].name, op_name)) i++;
            if (i == n)
                return fail_at(c, "unknown operator \"%s\" (use $eq $ne $gt $gte $lt $lte $in $nin $exists $not)",
                               op_name, NULL);
            rc = check_operand(c, field_ops[i].op, operand);
            if (!rc) rc = field_node(c, key, field_ops[i].op, operand, &kid);
        }
        if ((rc = adopt(c, all, kid, rc))) return rc;
        where_pop(c, mark);
    }
    return IS_OK;
}

static int compile_field(compiler *c, const char *key, const json_t *value, int depth, filter **out) {
    if (json_is_object(value) && json_object_size(value) > 0) {
        size_t ops = 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)value, k, v) ops += k[0] == '$';
        if (ops == json_object_size(value)) return compile_field_ops(c, key, value, depth, out);
        if (ops) return fail_at(c, "mixes operators and field names; write {\"a.b\": ...} for nested fields", NULL, NULL);
    }
    return field_node(c, key, OP_EQ, value, out); /* a literal: equality */
}

static int compile_combinator(compiler *c, const char *key, const json_t *value, int depth, filter **out) {
    if (!strcmp(key, "$not")) {
        if (!json_is_object(value)) return fail_at(c, "needs a filter object, not %s", type_name(value), NULL);
        filter *n = node_new(N_NOT), *inner = NULL;
        if (!n) return is_fail(c->err, c->errlen, IS_ERR_NOMEM, "out of memory");
        *out = n;
        int rc = compile_object(c, value, depth + 1, &inner);
        return adopt(c, n, inner, rc);
    }
    bool is_and = !strcmp(key, "$and");
    if (!is_and && strcmp(key, "$or"))
        return fail_at(c, "unknown operator \"%s\" here (use $and, $or, $not or a field name)", key, NULL);
    if (!json_is_array(value) || json_array_size(value) == 0)
        return fail_at(c, "needs a non-empty array of filters", NULL, NULL);
    filter *n = node_new(is_and ? N_AND : N_OR);
    if (!n) return is_fail(c->err, c->errlen, IS_ERR_NOMEM, "out of memory");
    *out = n;
    for (size_t i = 0; i < json_array_size(value); i++) {
        size_t mark = where_push(c, "[%zu]", NULL, i);
        filter *kid = NULL;
        int rc = compile_object(c, json_array_get(value, i), depth + 1, &kid);
        if ((rc = adopt(c, n, kid, rc))) return rc;
        where_pop(c, mark);
    }
    return IS_OK;
}

static int compile_object(compiler *c, const json_t *spec, int depth, filter **out) {
    *out = NULL;
    if (depth > FILTER_MAX_DEPTH) return fail_at(c, "nested too deeply (at most " FILTER_MAX_DEPTH_TEXT " levels)", NULL, NULL);
    if (!json_is_object(spec)) return fail_at(c, "must be a JSON object, not %s", type_name(spec), NULL);
    filter *all = node_new(json_object_size(spec) ? N_AND : N_ALL);
    if (!all) return is_fail(c->err, c->errlen, IS_ERR_NOMEM, "out of memory");
    *out = all;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)spec, key, value) {
        size_t mark = where_push(c, ".%s", key, 0);
        filter *kid = NULL;
        int rc = key[0] == '$' ? compile_combinator(c, key, value, depth, &kid)
                               : compile_field(c, key, value, depth, &kid);
        if ((rc = adopt(c, all, kid, rc))) return rc;
        where_pop(c, mark);
    }
    return IS_OK;
}

int filter_compile(const json_t *spec, filter **out, char *err, size_t errlen) {
    compiler c = {.err = err, .errlen = errlen, .where = "filter"};
    *out = NULL;
    if (!spec) {
        *out = node_new(N_ALL);
        return *out ? IS_OK : is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    filter *f = NULL;
    int rc = compile_object(&c, spec, 0, &f);
    if (rc) {
        filter_free(f);
        return rc;
    }
    *out = f;
    return IS_OK;
}

int filter_compile_text(const char *text, size_t len, filter **out, char *err, size_t errlen) {
    *out = NULL;
    if (len > FILTER_MAX_BYTES)
        return is_fail(err, errlen, IS_ERR_TOO_LARGE, "filter is %zu bytes, over the limit of %d", len, FILTER_MAX_BYTES);
    json_error_t jerr;
    json_t *spec = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!spec)
        return is_fail(err, errlen, IS_ERR_INVALID, "filter is not valid JSON: %s at line %d, column %d",
                       jerr.text, jerr.line, jerr.column);
    int rc = filter_compile(spec, out, err, errlen);
    json_decref(spec);
    return rc;
}

void filter_free(filter *f) {
    if (!f) return;
    for (size_t i = 0; i < f->nkids; i++) filter_free(f->kids[i]);
    free(f->kids);
    for (size_t i = 0; i < f->npath; i++) free(f->path[i]);
    free(f->path);
    json_decref(f->operand);
    free(f);
}

bool filter_is_all(const filter *f) { return f->kind == N_ALL; }

/* ---- matching ----------------------------------------------------------------------------- */

/* Deep equality with numbers compared by value, so 1 equals 1.0. */
static bool values_equal(const json_t *a, const json_t *b) {
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b)) return false;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               !memcmp(json_string_value(a), json_string_value(b), json_string_length(a));
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b)) return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!values_equal(json_array_get(a, i), json_array_get(b, i))) return false;
        return true;
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            json_t *w = json_object_get(b, k);
            if (!w || !values_equal(v, w)) return false;
        }
        return true;
    }
    default:
        return true; /* true, false, null: same type is same value */
    }
}

/* -1/0/1 into *cmp when a and b are comparable (two numbers or two strings). */
static bool order(const json_t *a, const json_t *b, int *cmp) {
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) {
            json_int_t x = json_integer_value(a), y = json_integer_value(b);
            *cmp = (x > y) - (x < y);
        } else {
            double x = json_number_value(a), y = json_number_value(b);
            *cmp = (x > y) - (x < y);
        }
        return true;
    }
    if (json_is_string(a) && json_is_string(b)) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int r = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        *cmp = r ? (r > 0) - (r < 0) : (la > lb) - (la < lb);
        return true;
    }
    return false;
}

static bool op_holds(op_kind op, int cmp) {
    switch (op) {
    case OP_GT: return cmp > 0;
    case OP_GTE: return cmp >= 0;
    case OP_LT: return cmp < 0;
    default: return cmp <= 0; /* OP_LTE */
    }
}

/* The value matches x, or it is an array with an element that matches x. */
static bool eq_any(const json_t *v, const json_t *x) {
    if (values_equal(v, x)) return true;
    if (json_is_array(v))
        for (size_t i = 0; i < json_array_size(v); i++)
            if (values_equal(json_array_get(v, i), x)) return true;
    return false;
}

static bool order_any(const json_t *v, op_kind op, const json_t *x) {
    int cmp;
    if (order(v, x, &cmp)) return op_holds(op, cmp);
    if (json_is_array(v))
        for (size_t i = 0; i < json_array_size(v); i++)
            if (order(json_array_get(v, i), x, &cmp) && op_holds(op, cmp)) return true;
    return false;
}

static const json_t *lookup(const json_t *doc, char *const *path, size_t n) {
    const json_t *v = doc;
    for (size_t i = 0; i < n && v; i++) v = json_is_object(v) ? json_object_get(v, path[i]) : NULL;
    return v;
}

static bool in_any(const json_t *v, const json_t *list) {
    for (size_t i = 0; i < json_array_size(list); i++)
        if (eq_any(v, json_array_get(list, i))) return true;
    return false;
}

static bool match_field(const filter *f, const json_t *doc) {
    const json_t *v = lookup(doc, f->path, f->npath);
    switch (f->op) {
    case OP_EXISTS: return (v != NULL) == json_is_true(f->operand);
    case OP_EQ: return v && eq_any(v, f->operand);
    case OP_NE: return !(v && eq_any(v, f->operand));
    case OP_IN: return v && in_any(v, f->operand);
    case OP_NIN: return !(v && in_any(v, f->operand));
    default: return v && order_any(v, f->op, f->operand);
    }
}

bool filter_match(const filter *f, const json_t *doc) {
    switch (f->kind) {
    case N_ALL: return true;
    case N_AND:
        for (size_t i = 0; i < f->nkids; i++)
            if (!filter_match(f->kids[i], doc)) return false;
        return true;
    case N_OR:
        for (size_t i = 0; i < f->nkids; i++)
            if (filter_match(f->kids[i], doc)) return true;
        return false;
    case N_NOT: return !filter_match(f->kids[0], doc);
    default: return match_field(f, doc);
    }
}
