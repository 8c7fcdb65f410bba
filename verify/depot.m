-- depot.m: the depot's Treiber stacks with the tagged index head
-- (lib/depot.c), and the reclamation of magazine memory (lib/trim.c
-- free_magazines, lib/epoch.c). verify/README.md maps every rule to the C
-- code and states the bounds.
--
-- One model, two configurations, selected by VARIANT (verify/meson.build
-- substitutes the line below):
--
--   depot configuration: 3 threads push and pop both stacks
--     0  depot                the protocol: must hold
--     1  depot-notags         tags off (magpool_test_depot_no_tags): the ABA
--                             interleaving must be found
--     2  depot-wrap           2-bit tags, and a popper may stall across 2^2
--                             successful CASes on its stack: the wrap-around
--                             ABA must be found (why the 40-bit tag rests on
--                             "no popper stalls across 2^40 operations")
--   reclaim configuration: 2 threads push and pop (inside epoch read
--   sections), a trimmer holding the growth lock pops, retires, waits for a
--   grace period and frees; the threads reuse retired indices
--     3  reclaim              the protocol: must hold
--     4  reclaim-nograce      the grace period skipped
--                             (magpool_test_skip_grace_period): a use after
--                             free must be found
--     5  reclaim-noreadsection  poppers outside read sections: a use after
--                             free must be found

const
  VARIANT : 0;

  RECLAIM : (VARIANT >= 3) ? 1 : 0;
  NWORKERS : (RECLAIM = 1) ? 2 : 3;
  NMAG : (RECLAIM = 1) ? 2 : 3;  -- magazine indices
  NOBJ : NMAG + RECLAIM;      -- magazine memory: one more while a retired
                              -- magazine waits for its grace period and its
                              -- index already serves a new one

  -- The tag has 40 bits in magpool, 2 here, so that it wraps. Assumption, as
  -- for the real tag: between reading the head and its CAS, a popper sees
  -- fewer than 2^bits successful CASes on its stack (STALL_LIMIT). Variant 2
  -- allows exactly 2^bits.
  TAGMOD : (VARIANT = 1) ? 1 : 4;
  STALL_LIMIT : (VARIANT = 2) ? 5 : 4;

  GRACE : (VARIANT = 4) ? 0 : 1;          -- epoch_synchronize() waits
  READ_SECTION : (VARIANT = 5) ? 0 : 1;   -- poppers call ck_epoch_begin/end

type
  worker_t : scalarset(NWORKERS);
  mag_t : scalarset(NMAG);    -- a magazine index (m->self)
  obj_t : scalarset(NOBJ);    -- a magazine's memory (struct mag *)
  ref_t : record nil : boolean; i : mag_t; end;   -- index+1; nil = 0
  ptr_t : record nil : boolean; o : obj_t; end;   -- pointer; nil = NULL
  tag_t : 0..TAGMOD - 1;
  head_t : record r : ref_t; tag : tag_t; end;
  stack_t : enum { FULL, EMPTY };
  -- ghost: where a magazine is, by the protocol's own account
  where_t : enum { NOWHERE, ON_FULL, ON_EMPTY, HELD, RETIRING };
  pc_t : enum { IDLE, POP_MAGAT, POP_NEXT, POP_CAS, PUSH_CAS };
  proc_t : record
    pc : pc_t;
    s : stack_t;              -- the stack being pushed or popped
    old : head_t;             -- `old` in depot_push / depot_pop
    ptr : ptr_t;              -- `m` in depot_pop: what mag_at() returned
    dangling : boolean;       -- ghost: *ptr was freed after mag_at() returned it
    nxt : ref_t;              -- `next` in depot_pop
    win : 0..STALL_LIMIT;     -- ghost: successful CASes on s since old was read
    mine : ptr_t;             -- the magazine this thread owns
    inrs : boolean;           -- inside an epoch read section
  end;
  trim_pc_t : enum { T_IDLE, T_POP, T_GRACE };

var
  head : array [stack_t] of head_t;
  slot : array [mag_t] of ptr_t;        -- the index table: mag_at(i)
  freeidx : array [mag_t] of boolean;   -- d->free_idx: retired, reusable
  nextv : array [obj_t] of ref_t;       -- m->next
  selfidx : array [obj_t] of ref_t;     -- m->self
  live : array [obj_t] of boolean;      -- allocated and not freed
  where : array [obj_t] of where_t;     -- ghost
  w : array [worker_t] of proc_t;
  tr : proc_t;                          -- the trimmer (reclaim configuration)
  tpc : trim_pc_t;
  retiring : ptr_t;                     -- retired, waiting for the grace period
  gp_wait : array [worker_t] of boolean; -- readers the grace period waits for

------------------------------------------------------------------- helpers

function ref_eq(a : ref_t; b : ref_t) : boolean;
begin
  return a.nil = b.nil & (a.nil | a.i = b.i);
end;

function head_eq(a : head_t; b : head_t) : boolean;
begin
  return ref_eq(a.r, b.r) & a.tag = b.tag;
end;

function tag_next(t : tag_t) : tag_t;
begin
  return (t + 1) % TAGMOD;
end;

function on_stack(s : stack_t) : where_t;
begin
  if s = FULL then return ON_FULL; else return ON_EMPTY; endif;
end;

procedure set_nil_ref(var r : ref_t);
begin
  r.nil := true;
  undefine r.i;
end;

procedure set_nil_ptr(var p : ptr_t);
begin
  p.nil := true;
  undefine p.o;
end;

function in_pop_window(p : proc_t) : boolean;
begin
  return p.pc = POP_MAGAT | p.pc = POP_NEXT | p.pc = POP_CAS;
end;

-- A successful CAS on s: each popper of s that read the head before it sees
-- one more (ghost, for the stall assumption).
procedure count_cas(s : stack_t);
begin
  for u : worker_t do
    if w[u].s = s & in_pop_window(w[u]) & w[u].win < STALL_LIMIT then
      w[u].win := w[u].win + 1;
    endif;
  endfor;
  if tr.s = s & in_pop_window(tr) & tr.win < STALL_LIMIT then
    tr.win := tr.win + 1;
  endif;
end;

-- Tag values are only compared for equality and incremented mod TAGMOD, so
-- rotating every copy of stack s's tag (the head's and each `old` read from
-- s) by one amount changes no behaviour. After every successful CAS the
-- head's tag is rotated to 0: one state per class (a symmetry reduction, not
-- an abstraction).
procedure rotate_old(var p : proc_t; s : stack_t; d : tag_t);
begin
  if p.pc != IDLE & p.s = s then
    p.old.tag := (p.old.tag + TAGMOD - d) % TAGMOD;
  endif;
end;

procedure normalize_tags(s : stack_t);
var d : tag_t;
begin
  d := head[s].tag;
  if d != 0 then
    head[s].tag := 0;
    for u : worker_t do rotate_old(w[u], s, d); endfor;
    rotate_old(tr, s, d);
  endif;
end;

-- Back at IDLE a thread keeps nothing but what it owns.
procedure go_idle(var p : proc_t);
begin
  p.pc := IDLE;
  p.s := FULL;
  set_nil_ref(p.old.r);
  p.old.tag := 0;
  set_nil_ptr(p.ptr);
  p.dangling := false;
  set_nil_ref(p.nxt);
  p.win := 0;
  p.inrs := false;
end;

---------------------------------------------------------------- depot_pop

-- `old = atomic_load_acquire(&s->head)`: the first load, the reload after
-- mag_at() returned NULL, and (with the CAS) the failed CAS's reload.
procedure pop_load(var p : proc_t);
begin
  p.old := head[p.s];
  p.win := 0;
  set_nil_ptr(p.ptr);
  p.dangling := false;
  if p.old.r.nil then
    go_idle(p);                 -- empty: return NULL (and ck_epoch_end)
  elsif RECLAIM = 0 then
    -- No retirement in this configuration: the index table never changes,
    -- so mag_at() is a constant function and is folded into the load.
    p.ptr := slot[p.old.r.i];
    p.pc := POP_NEXT;
  else
    p.pc := POP_MAGAT;
  endif;
end;

-- `m = mag_at(d, idx1)`; NULL: retired, reload the head.
procedure pop_magat(var p : proc_t);
begin
  if slot[p.old.r.i].nil then
    pop_load(p);
  else
    p.ptr := slot[p.old.r.i];
    p.dangling := false;
    p.pc := POP_NEXT;
  endif;
end;

-- `next = atomic_load_relaxed(&m->next)`
procedure pop_next(var p : proc_t);
begin
  assert !p.dangling "use after free: depot_pop read next of a freed magazine";
  p.nxt := nextv[p.ptr.o];
  p.pc := POP_CAS;
end;

-- `atomic_cas_weak_acquire(&s->head, &old, head_pack(next, tag + 1))`;
-- success returns m (and the caller leaves its read section).
procedure pop_cas(var p : proc_t);
var s : stack_t;
var o : obj_t;
begin
  s := p.s;
  if head_eq(head[s], p.old) then
    head[s].r := p.nxt;
    head[s].tag := tag_next(p.old.tag);
    count_cas(s);
    normalize_tags(s);
    o := p.ptr.o;
    assert where[o] = on_stack(s) "depot_pop returned a magazine that was not on the stack";
    where[o] := HELD;
    p.mine := p.ptr;
    go_idle(p);
  else
    pop_load(p);
  endif;
end;

--------------------------------------------------------------- depot_push

-- `old = atomic_load_relaxed(&s->head)` and the first
-- `atomic_store_relaxed(&m->next, (uint32_t)old)`, as one step: the load
-- has no effect, and m is private until the CAS publishes it (a stale popper
-- may read m->next meanwhile, seeing the old link or the new one, both of
-- which this model produces).
procedure push_begin(var p : proc_t; s : stack_t);
begin
  p.s := s;
  p.old := head[s];
  nextv[p.mine.o] := p.old.r;
  p.pc := PUSH_CAS;
end;

-- `atomic_cas_weak_release(&s->head, &old, head_pack(m->self, tag + 1))`;
-- on failure the CAS has reloaded old, and the loop stores m->next again.
procedure push_cas(var p : proc_t);
var s : stack_t;
begin
  s := p.s;
  if head_eq(head[s], p.old) then
    head[s].r := selfidx[p.mine.o];
    head[s].tag := tag_next(p.old.tag);
    count_cas(s);
    normalize_tags(s);
    where[p.mine.o] := on_stack(s);
    set_nil_ptr(p.mine);
    go_idle(p);
  else
    push_begin(p, s);
  endif;
end;

--------------------------------------------------------------- start state

startstate
var prev : ref_t;
var used : array [mag_t] of boolean;
var placed : boolean;
begin
  -- NMAG magazines, all on the full stack; in the reclaim configuration one
  -- more piece of magazine memory is unallocated.
  set_nil_ref(prev);
  for i : mag_t do used[i] := false; endfor;
  for o : obj_t do
    live[o] := false;
    where[o] := NOWHERE;
    set_nil_ref(nextv[o]);
    set_nil_ref(selfidx[o]);
    placed := false;
    for i : mag_t do
      if !placed & !used[i] then
        used[i] := true;
        placed := true;
        live[o] := true;
        where[o] := ON_FULL;
        selfidx[o].nil := false; selfidx[o].i := i;
        slot[i].nil := false; slot[i].o := o;
        freeidx[i] := false;
        nextv[o] := prev;
        prev.nil := false; prev.i := i;
      endif;
    endfor;
  endfor;
  head[FULL].r := prev;   head[FULL].tag := 0;
  set_nil_ref(head[EMPTY].r); head[EMPTY].tag := 0;
  for u : worker_t do
    go_idle(w[u]);
    set_nil_ptr(w[u].mine);
    gp_wait[u] := false;
  endfor;
  go_idle(tr);
  set_nil_ptr(tr.mine);
  tpc := T_IDLE;
  set_nil_ptr(retiring);
end;

----------------------------------------------------------- threads (workers)

ruleset u : worker_t do

  ruleset s : stack_t do
    -- cache_acquire_slow / cache_release_slow (depot_get_empty) /
    -- cache_attach: epoch_read_lock(); depot_pop(); ...
    rule "worker: ck_epoch_begin; depot_pop: load head"
      w[u].pc = IDLE & w[u].mine.nil
    ==>
    begin
      w[u].s := s;
      w[u].inrs := (READ_SECTION = 1);
      pop_load(w[u]);
    end;

    rule "worker: depot_push: load head, store next"
      w[u].pc = IDLE & !w[u].mine.nil
    ==>
    begin
      push_begin(w[u], s);
    end;
  endruleset;

  -- A worker that is back at IDLE has left its read section
  -- (ck_epoch_end): no grace period waits for it any more.
  rule "worker: depot_pop: mag_at"
    w[u].pc = POP_MAGAT
  ==>
  begin
    pop_magat(w[u]);
    if w[u].pc = IDLE then gp_wait[u] := false; endif;
  end;
  rule "worker: depot_pop: read next"  w[u].pc = POP_NEXT  ==> begin pop_next(w[u]); end;
  rule "worker: depot_pop: CAS; ck_epoch_end once it returns"
    w[u].pc = POP_CAS
  ==>
  begin
    pop_cas(w[u]);
    if w[u].pc = IDLE then gp_wait[u] := false; endif;
  end;
  rule "worker: depot_push: CAS (on failure: reload, store next)"
    w[u].pc = PUSH_CAS
  ==>
  begin
    push_cas(w[u]);
  end;

  -- depot_get_empty() found no empty magazine: depot_mag_alloc() takes a
  -- retired index (d->free_idx), allocates memory, initialises the magazine
  -- (next = 0) and publishes it in the index table (release).
  ruleset i : mag_t do
    ruleset o : obj_t do
      rule "worker: depot_mag_alloc reuses a retired index"
        w[u].pc = IDLE & w[u].mine.nil & freeidx[i] & !live[o]
      ==>
      begin
        live[o] := true;
        set_nil_ref(nextv[o]);
        selfidx[o].nil := false; selfidx[o].i := i;
        where[o] := HELD;
        freeidx[i] := false;
        slot[i].nil := false; slot[i].o := o;
        w[u].mine.nil := false; w[u].mine.o := o;
      end;
    endruleset;
  endruleset;

endruleset;

--------------------------------------------------- the trimmer (growth lock)

-- cache_trim: under the growth lock, drain_stack() pops without a read
-- section (trim frees only under that lock).
ruleset s : stack_t do
  rule "trim: lock; drain_stack: depot_pop: load head"
    RECLAIM = 1 & tpc = T_IDLE
  ==>
  begin
    tpc := T_POP;
    tr.s := s;
    pop_load(tr);
  end;
endruleset;

rule "trim: depot_pop: mag_at"    tpc = T_POP & tr.pc = POP_MAGAT ==> begin pop_magat(tr); end;
rule "trim: depot_pop: read next" tpc = T_POP & tr.pc = POP_NEXT  ==> begin pop_next(tr); end;
rule "trim: depot_pop: CAS"       tpc = T_POP & tr.pc = POP_CAS   ==> begin pop_cas(tr); end;

rule "trim: stack was empty; unlock"
  tpc = T_POP & tr.pc = IDLE & tr.mine.nil
==>
begin
  tpc := T_IDLE;
end;

-- free_magazines(): depot_retire() clears the index-table slot and puts the
-- index on the free list; epoch_synchronize() starts: it waits for every
-- reader inside a read section now.
rule "trim: depot_retire; epoch_synchronize begins"
  tpc = T_POP & tr.pc = IDLE & !tr.mine.nil
==>
var i : mag_t;
begin
  i := selfidx[tr.mine.o].i;
  set_nil_ptr(slot[i]);
  freeidx[i] := true;
  where[tr.mine.o] := RETIRING;
  retiring := tr.mine;
  set_nil_ptr(tr.mine);
  for u : worker_t do
    gp_wait[u] := (GRACE = 1) & w[u].inrs;
  endfor;
  tpc := T_GRACE;
end;

rule "trim: grace period over; depot_mag_free; unlock"
  tpc = T_GRACE & forall u : worker_t do !gp_wait[u] endforall
==>
var o : obj_t;
begin
  o := retiring.o;
  live[o] := false;
  where[o] := NOWHERE;
  set_nil_ref(nextv[o]);
  set_nil_ref(selfidx[o]);
  for u : worker_t do
    if !w[u].ptr.nil & w[u].ptr.o = o then w[u].dangling := true; endif;
  endfor;
  set_nil_ptr(retiring);
  tpc := T_IDLE;
end;

---------------------------------------------------------------- properties

-- The stall assumption (STALL_LIMIT): schedules beyond it are discarded.
assume "no popper sees 2^tag-bits CASes on its stack between load and CAS"
  (forall u : worker_t do w[u].win < STALL_LIMIT endforall) & tr.win < STALL_LIMIT;

-- Walk stack s from its head: every index on it names a live magazine the
-- ghost puts on s, none twice; and every magazine the ghost puts on s is
-- reached. So none is on a stack twice, none is both owned and on a stack,
-- none is lost.
function stack_ok(s : stack_t) : boolean;
var r : ref_t;
var o : obj_t;
var seen : array [obj_t] of boolean;
begin
  for p : obj_t do seen[p] := false; endfor;
  r := head[s].r;
  while !r.nil do
    if slot[r.i].nil then return false; endif;     -- a retired index
    o := slot[r.i].o;
    if seen[o] then return false; endif;            -- twice, or a cycle
    if where[o] != on_stack(s) then return false; endif;
    seen[o] := true;
    r := nextv[o];
  endwhile;
  for p : obj_t do
    if where[p] = on_stack(s) & !seen[p] then return false; endif;
  endfor;
  return true;
end;

invariant "full stack: each magazine once, none owned, none lost" stack_ok(FULL);
invariant "empty stack: each magazine once, none owned, none lost" stack_ok(EMPTY);

function owners(o : obj_t) : 0..NWORKERS + 1;
var n : 0..NWORKERS + 1;
begin
  n := 0;
  for u : worker_t do
    if !w[u].mine.nil & w[u].mine.o = o then n := n + 1; endif;
  endfor;
  if !tr.mine.nil & tr.mine.o = o then n := n + 1; endif;
  return n;
end;

invariant "a magazine in hand has exactly one owner, and is live"
  forall o : obj_t do
    (where[o] = HELD -> (owners(o) = 1 & live[o]))
    & (where[o] != HELD -> owners(o) = 0)
  endforall;

invariant "every index is in the table or on the free list, never both"
  forall i : mag_t do
    freeidx[i] = slot[i].nil
    & (!slot[i].nil -> (live[slot[i].o] & !selfidx[slot[i].o].nil
                        & selfidx[slot[i].o].i = i))
  endforall;

-- Non-vacuity: the interleavings the protocol exists for are reached
-- (a cover that is never hit fails the check).
cover "depot: a popper's CAS fails on the tag alone (A-B-A), 2^bits - 1 CASes after its load"
  RECLAIM = 1
  | exists u : worker_t do
      w[u].pc = POP_CAS & ref_eq(head[w[u].s].r, w[u].old.r)
      & head[w[u].s].tag != w[u].old.tag & w[u].win = TAGMOD - 1
    endexists;
cover "reclaim: mag_at() is about to return NULL (retired index): the popper reloads"
  RECLAIM = 0
  | exists u : worker_t do
      w[u].pc = POP_MAGAT & slot[w[u].old.r.i].nil
    endexists;
cover "reclaim: a popper holds a retired magazine that waits for its grace period"
  RECLAIM = 0
  | exists u : worker_t do
      w[u].pc = POP_NEXT & where[w[u].ptr.o] = RETIRING
    endexists;
cover "reclaim: the retired index already serves a new magazine"
  RECLAIM = 0
  | (!retiring.nil & !slot[selfidx[retiring.o].i].nil);
cover "reclaim: the grace period waits for a reader"
  RECLAIM = 0
  | (tpc = T_GRACE & exists u : worker_t do gp_wait[u] endexists);
