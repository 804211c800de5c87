/* snap_table.c — the tensor table a function kind receives after a restore: each tensor's
 * name, dtype, shape and pointer (host or device), plus the metadata JSON, independent of the
 * snap_file it was made from. */
#include <errno.h>
#include <stdlib.h>
#include "snapshot/snap_int.h"

int snap_table_make(const snap_file *f, void *base, int device, snap_table **out)
{
	size_t names = 0, n = f->n_tensors, ml = strlen(f->meta), kl = strlen(f->kind);
	for (size_t i = 0; i < n; i++)
		names += strlen(f->tensors[i].name) + 1;
	/* one allocation: table, entries, names, metadata, kind */
	size_t sz = sizeof(snap_table) + n * sizeof(snap_table_entry) + names + ml + 1 + kl + 1;
	snap_table *t = calloc(1, sz);
	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->n = n;
	t->t = (snap_table_entry *)(t + 1);
	char *p = (char *)(t->t + n);
	for (size_t i = 0; i < n; i++) {
		const snap_tensor *s = &f->tensors[i];
		snap_table_entry *e = &t->t[i];
		size_t l = strlen(s->name) + 1;
		memcpy(p, s->name, l);
		e->name = p;
		p += l;
		e->dtype = snap_dtype_name(s->dtype);
		e->dtype_id = s->dtype;
		e->ndim = s->ndim;
		for (uint32_t d = 0; d < s->ndim; d++)
			e->shape[d] = (int64_t)s->shape[d];
		e->data = base ? (uint8_t *)base + s->offset : NULL;
		e->nbytes = s->nbytes;
	}
	memcpy(p, f->meta, ml + 1);
	t->metadata_json = p;
	p += ml + 1;
	memcpy(p, f->kind, kl + 1);
	t->kind = p;
	t->device = device;
	t->base = base;
	t->image_size = f->image_size;
	*out = t;
	return 0;
}

int snap_table_rebase(const snap_table *t, void *base, int device, snap_table **out)
{
	/* the table is one allocation laid out as snap_table_make lays it: copy it whole, then
	 * move every internal pointer by the block's displacement and every data pointer to base */
	size_t sz = sizeof(snap_table) + t->n * sizeof(snap_table_entry) + strlen(t->metadata_json) + 1 +
		    strlen(t->kind) + 1;
	for (size_t i = 0; i < t->n; i++)
		sz += strlen(t->t[i].name) + 1;
	snap_table *c = malloc(sz);
	*out = NULL;
	if (!c)
		return -ENOMEM;
	memcpy(c, t, sz);
	const char *ob = (const char *)t;
	char *nb = (char *)c;
	c->t = (snap_table_entry *)(c + 1);
	for (size_t i = 0; i < c->n; i++) {
		snap_table_entry *e = &c->t[i];
		e->name = nb + (e->name - ob);
		e->data = base && t->base ? (uint8_t *)base + ((uint8_t *)t->t[i].data - (uint8_t *)t->base) : NULL;
	}
	c->metadata_json = nb + (t->metadata_json - ob);
	c->kind = nb + (t->kind - ob);
	c->base = base;
	c->device = device;
	*out = c;
	return 0;
}

const snap_table_entry *snap_table_find(const snap_table *t, const char *name)
{
	for (size_t i = 0; t && name && i < t->n; i++)
		if (strcmp(t->t[i].name, name) == 0)
			return &t->t[i];
	return NULL;
}

void snap_table_free(snap_table *t)
{
	free(t);
}
