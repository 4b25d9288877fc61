/* The concept table: concepts.h. */
#include "embed/concepts.h"

#include <ctype.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/status.h"

typedef struct {
    char *word;  /* normalised */
    int concept;
} word_entry;

typedef struct {
    char *plural, *singular; /* normalised */
} plural_entry;

struct concept_table {
    int num_classes, num_concepts;
    int *chain_start;    /* num_classes + 1 offsets into chains */
    int *chains;         /* each class's concepts: its own synset, then every one above it */
    word_entry *words;   /* sorted by word */
    size_t nwords;
    plural_entry *plurals; /* sorted by plural */
    size_t nplurals;
};

/* Lower case, '-', '_' and whitespace runs to one space, trimmed; false when it does not fit. */
static bool normalise(const char *in, char *out, size_t outlen) {
    size_t n = 0;
    bool space = false;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (isspace(*p) || *p == '-' || *p == '_') {
            space = n > 0;
            continue;
        }
        if (space) {
            if (n + 1 >= outlen) return false;
            out[n++] = ' ';
            space = false;
        }
        if (n + 1 >= outlen) return false;
        out[n++] = (char)tolower(*p);
    }
    out[n] = 0;
    return true;
}

static int by_word(const void *a, const void *b) {
    return strcmp(((const word_entry *)a)->word, ((const word_entry *)b)->word);
}

static int by_plural(const void *a, const void *b) {
    return strcmp(((const plural_entry *)a)->plural, ((const plural_entry *)b)->plural);
}

void concepts_free(concept_table *t) {
    if (!t) return;
    for (size_t i = 0; i < t->nwords; i++) free(t->words[i].word);
    for (size_t i = 0; i < t->nplurals; i++) {
        free(t->plurals[i].plural);
        free(t->plurals[i].singular);
    }
    free(t->words);
    free(t->plurals);
    free(t->chain_start);
    free(t->chains);
    free(t);
}

static int load_words(concept_table *t, json_t *concepts, char *err, size_t errlen) {
    size_t cap = 0, i;
    json_t *c;
    json_array_foreach(concepts, i, c) cap += json_array_size(json_object_get(c, "names"));
    t->words = calloc(cap ? cap : 1, sizeof *t->words);
    if (!t->words) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    json_array_foreach(concepts, i, c) {
        json_t *names = json_object_get(c, "names"), *name;
        size_t j;
        if (!json_is_array(names) || !json_array_size(names))
            return is_fail(err, errlen, IS_ERR_MODEL, "concept %zu has no names", i);
        json_array_foreach(names, j, name) {
            char word[CONCEPTS_MAX_WORD + 1];
            if (!json_is_string(name) || !normalise(json_string_value(name), word, sizeof word) || !*word)
                continue; /* a word nobody can type within the limit names nothing */
            if (!(t->words[t->nwords].word = strdup(word))) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
            t->words[t->nwords++].concept = (int)i;
        }
    }
    qsort(t->words, t->nwords, sizeof *t->words, by_word);
    return IS_OK;
}

static int load_chains(concept_table *t, json_t *classes, char *err, size_t errlen) {
    size_t total = 0, i;
    json_t *chain;
    json_array_foreach(classes, i, chain) {
        if (!json_is_array(chain) || !json_array_size(chain))
            return is_fail(err, errlen, IS_ERR_MODEL, "class %zu has no concepts", i);
        total += json_array_size(chain);
    }
    t->chain_start = malloc(sizeof *t->chain_start * (size_t)(t->num_classes + 1));
    t->chains = malloc(sizeof *t->chains * total);
    if (!t->chain_start || !t->chains) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    int at = 0;
    json_array_foreach(classes, i, chain) {
        t->chain_start[i] = at;
        size_t j;
        json_t *v;
        json_array_foreach(chain, j, v) {
            json_int_t c = json_integer_value(v);
            if (!json_is_integer(v) || c < 0 || c >= t->num_concepts)
                return is_fail(err, errlen, IS_ERR_MODEL, "class %zu names a concept that does not exist", i);
            t->chains[at++] = (int)c;
        }
    }
    t->chain_start[t->num_classes] = at;
    return IS_OK;
}

static int load_plurals(concept_table *t, json_t *plurals, char *err, size_t errlen) {
    if (!plurals) return IS_OK;
    if (!json_is_object(plurals)) return is_fail(err, errlen, IS_ERR_MODEL, "plurals is not an object");
    t->plurals = calloc(json_object_size(plurals) + 1, sizeof *t->plurals);
    if (!t->plurals) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(plurals, key, v) {
        char p[CONCEPTS_MAX_WORD + 1], s[CONCEPTS_MAX_WORD + 1];
        if (!json_is_string(v) || !normalise(key, p, sizeof p) || !normalise(json_string_value(v), s, sizeof s)) continue;
        plural_entry *e = &t->plurals[t->nplurals];
        if (!(e->plural = strdup(p)) || !(e->singular = strdup(s))) {
            free(e->plural);
            return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        }
        t->nplurals++;
    }
    qsort(t->plurals, t->nplurals, sizeof *t->plurals, by_plural);
    return IS_OK;
}

int concepts_load(const char *path, int num_classes, concept_table **out, char *err, size_t errlen) {
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        FILE *f = fopen(path, "rb");
        if (!f) return is_fail(err, errlen, IS_ERR_NOT_FOUND, "%s: no concept table (run tools/fetch-model)", path);
        fclose(f);
        return is_fail(err, errlen, IS_ERR_MODEL, "%s: line %d: %s", path, jerr.line, jerr.text);
    }
    json_t *concepts = json_object_get(root, "concepts"), *classes = json_object_get(root, "classes");
    int rc = IS_OK;
    if (!json_is_array(concepts) || !json_is_array(classes) || json_array_size(concepts) > 1000000)
        rc = is_fail(err, errlen, IS_ERR_MODEL, "%s: not a concept table", path);
    else if (json_array_size(classes) != (size_t)num_classes)
        rc = is_fail(err, errlen, IS_ERR_MODEL, "%s: %zu classes, the model has %d", path, json_array_size(classes),
                     num_classes);
    concept_table *t = rc ? NULL : calloc(1, sizeof *t);
    if (!rc && !t) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    if (!rc) {
        t->num_classes = num_classes;
        t->num_concepts = (int)json_array_size(concepts);
        rc = load_words(t, concepts, err, errlen);
    }
    if (!rc) rc = load_chains(t, classes, err, errlen);
    if (!rc) rc = load_plurals(t, json_object_get(root, "plurals"), err, errlen);
    json_decref(root);
    if (rc) {
        concepts_free(t);
        return rc;
    }
    *out = t;
    return IS_OK;
}

/* Marks the concepts named word in mark; how many. */
static int mark_word(const concept_table *t, const char *word, unsigned char *mark) {
    word_entry key = {.word = (char *)word};
    word_entry *hit = bsearch(&key, t->words, t->nwords, sizeof *t->words, by_word);
    if (!hit) return 0;
    while (hit > t->words && !strcmp(hit[-1].word, word)) hit--;
    int n = 0;
    for (; hit < t->words + t->nwords && !strcmp(hit->word, word); hit++, n++) mark[hit->concept] = 1;
    return n;
}

/* The word's singular by English's regular rules, into out; false when none applies. */
static bool regular_singular(const char *word, const char *ending, const char *replacement, char *out, size_t outlen) {
    size_t n = strlen(word), e = strlen(ending);
    if (n <= e + 1 || strcmp(word + n - e, ending)) return false;
    snprintf(out, outlen, "%.*s%s", (int)(n - e), word, replacement);
    return true;
}

int concepts_match(const concept_table *t, const char *text, unsigned char *classes) {
    memset(classes, 0, (size_t)t->num_classes);
    char word[CONCEPTS_MAX_WORD + 1];
    if (!normalise(text, word, sizeof word) || !*word) return 0;
    unsigned char *mark = calloc((size_t)t->num_concepts, 1);
    if (!mark) return 0;
    int named = mark_word(t, word, mark);
    if (!named) {
        plural_entry key = {.plural = word};
        plural_entry *p = bsearch(&key, t->plurals, t->nplurals, sizeof *t->plurals, by_plural);
        if (p) named = mark_word(t, p->singular, mark);
    }
    /* -ies → -y (puppies), -es after s, x, z, ch, sh (boxes), else -s (dogs) */
    static const char *const rules[][2] = {{"ies", "y"}, {"ses", "s"}, {"xes", "x"}, {"zes", "z"},
                                           {"ches", "ch"}, {"shes", "sh"}, {"s", ""}};
    for (size_t r = 0; !named && r < sizeof rules / sizeof *rules; r++) {
        char singular[CONCEPTS_MAX_WORD + 1];
        if (regular_singular(word, rules[r][0], rules[r][1], singular, sizeof singular))
            named = mark_word(t, singular, mark);
    }
    int n = 0;
    for (int c = 0; named && c < t->num_classes; c++)
        for (int i = t->chain_start[c]; i < t->chain_start[c + 1]; i++)
            if (mark[t->chains[i]]) {
                classes[c] = 1;
                n++;
                break;
            }
    free(mark);
    return n;
}
