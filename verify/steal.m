-- steal.m: the steal handshake of lib/cache.c and lib/steal.c (the asymmetric fence)
-- under x86-TSO. verify/README.md maps every rule to the C code and states
-- the bounds.
--
-- Every plain or release store goes into the storing thread's FIFO store
-- buffer; a load reads the thread's own newest buffered store to that
-- location, else memory; a drain rule moves the oldest buffered store to
-- memory at any time. Locked instructions (the depot's CASes,
-- pthread_mutex_lock/unlock) need an empty buffer. membarrier() is a full
-- fence on the caller and, at some point before it returns, on every other
-- thread: each of those drains that thread's whole buffer, interleaved with
-- the thread's own steps.
--
-- Variants (VARIANT, substituted by verify/meson.build):
--   0  steal                  the protocol, with membarrier() allowed to
--                             fail (then the stealer clears the steal flags
--                             and stealing stays disabled): must hold
--   1  steal-nofence          no membarrier(): a violation must be found
--   2  steal-fencefail-steals membarrier() fails and the stealer steals
--                             anyway: a violation must be found
--   3  steal-nofence-blocks   no membarrier(), and touch() not checked: the
--                             damage itself (a block lost or in two hands)
--                             must be found, so the block invariants are
--                             not vacuous

const
  VARIANT : 0;

  NOWN : 1;        -- threads owning a cache (all of them victims of the steal)
  NMAG : NOWN + 2; -- magazines: one loaded per owner, two on the depot
  NB : 2;          -- blocks
  M : 1;           -- rounds per magazine
  BUF : 5;         -- store buffer entries per thread

  FENCE : (VARIANT = 1 | VARIANT = 3) ? 0 : 1;  -- membarrier() is called
  FAIL_STEALS : (VARIANT = 2) ? 1 : 0;      -- a failed membarrier() is ignored
  CHECK_TOUCH : (VARIANT = 3) ? 0 : 1;      -- touch() asserts

type
  owner_t : scalarset(NOWN);
  mag_t : 1..NMAG;
  blk_t : 0..NB;                  -- 0: no block
  val_t : 0..NMAG;                -- any stored value (flag, count, magazine, block)
  loc_t : enum { L_BUSY, L_STEAL, L_LMAG, L_LR, L_SLOT, L_COUNT };
  -- a memory location: a field of owner o's tcache, or of magazine mg
  addr_t : record k : loc_t; o : owner_t; mg : mag_t; i : 0..M - 1; end;
  entry_t : record a : addr_t; v : val_t; end;
  buf_t : record n : 0..BUF; e : array [0..BUF - 1] of entry_t; end;

  opc_t : enum { O_IDLE,
                 E_BUSY, E_STEAL,                   -- cache_enter + steal_pending
                 W_BUSY0, W_LOCK, W_UNLOCK,         -- wait_out_steal
                 A_FAST, A_DEPOT, A_PUSHOLD, A_SET, A_FAIL,  -- acquire
                 R_FAST, R_DEPOT, R_COUNT, R_PUSH, R_SET };  -- release
  op_t : enum { ACQ, REL };
  owner_state : record
    pc : opc_t;
    op : op_t;
    r : 0..M;          -- lrounds as loaded
    mg : 0..NMAG;      -- tc->loaded as loaded (0: none)
    b : blk_t;         -- the block being acquired / released
    x : 0..NMAG;       -- the magazine from the depot
    cnt : 0..M;        -- its count
  end;

  spc_t : enum { S_IDLE, S_FLAG, S_FENCE, S_IPI, S_WAIT, S_MOVE, S_RELEASE,
                 S_UNLOCK };

var
  -- memory
  m_busy, m_steal : array [owner_t] of 0..1;
  m_lmag : array [owner_t] of mag_t;
  m_lr : array [owner_t] of 0..M;
  m_slot : array [mag_t] of array [0..M - 1] of blk_t;
  m_count : array [mag_t] of 0..M;
  on_full, on_empty : array [mag_t] of boolean;   -- the depot's two stacks
  lock_free : boolean;                             -- the growth lock

  obuf : array [owner_t] of buf_t;
  sbuf : buf_t;
  ow : array [owner_t] of owner_state;

  spc : spc_t;
  flagged, ipi, waited, moved : array [owner_t] of boolean;
  steal_disabled : boolean;

  -- ghost
  held : array [1..NB] of boolean;                 -- in a user's hands
  moving : array [owner_t] of boolean;             -- a stealer is inside o's cache

---------------------------------------------------------------- TSO helpers

function is_cache_field(a : addr_t) : boolean;
begin
  return a.k = L_LMAG | a.k = L_LR | a.k = L_SLOT | a.k = L_COUNT;
end;

function addr_eq(a : addr_t; b : addr_t) : boolean;
begin
  if a.k != b.k then return false; endif;
  if a.k = L_SLOT then return a.mg = b.mg & a.i = b.i; endif;
  if a.k = L_COUNT then return a.mg = b.mg; endif;
  return a.o = b.o;
end;

function mem_read(a : addr_t) : val_t;
begin
  switch a.k
  case L_BUSY:  return m_busy[a.o];
  case L_STEAL: return m_steal[a.o];
  case L_LMAG:  return m_lmag[a.o];
  case L_LR:    return m_lr[a.o];
  case L_SLOT:  return m_slot[a.mg][a.i];
  case L_COUNT: return m_count[a.mg];
  endswitch;
end;

procedure mem_write(a : addr_t; v : val_t);
begin
  switch a.k
  case L_BUSY:  m_busy[a.o] := v;
  case L_STEAL: m_steal[a.o] := v;
  case L_LMAG:  m_lmag[a.o] := v;
  case L_LR:    m_lr[a.o] := v;
  case L_SLOT:  m_slot[a.mg][a.i] := v;
  case L_COUNT: m_count[a.mg] := v;
  endswitch;
end;

-- A load: the thread's own newest buffered store to a, else memory.
function load(b : buf_t; a : addr_t) : val_t;
var v : val_t;
var found : boolean;
begin
  found := false;
  v := 0;
  for i := 0 to BUF - 1 do
    if i < b.n & addr_eq(b.e[i].a, a) then
      v := b.e[i].v;
      found := true;
    endif;
  endfor;
  if found then return v; endif;
  return mem_read(a);
end;

procedure store(var b : buf_t; a : addr_t; v : val_t);
begin
  assert b.n < BUF "model bound: store buffer full (guard missing)";
  b.e[b.n].a := a;
  b.e[b.n].v := v;
  b.n := b.n + 1;
end;

-- The oldest buffered store reaches memory.
procedure drain_one(var b : buf_t);
begin
  mem_write(b.e[0].a, b.e[0].v);
  for i := 0 to BUF - 2 do
    if i + 1 < b.n then b.e[i] := b.e[i + 1]; endif;
  endfor;
  b.n := b.n - 1;
  undefine b.e[b.n];
end;

procedure drain_all(var b : buf_t);
begin
  while b.n > 0 do drain_one(b); endwhile;
end;

function owner_addr(k : loc_t; o : owner_t) : addr_t;
var a : addr_t;
begin
  undefine a;
  a.k := k; a.o := o;
  return a;
end;

function count_addr(mg : mag_t) : addr_t;
var a : addr_t;
begin
  undefine a;
  a.k := L_COUNT; a.mg := mg;
  return a;
end;

function slot_addr(mg : mag_t; i : 0..M - 1) : addr_t;
var a : addr_t;
begin
  undefine a;
  a.k := L_SLOT; a.mg := mg; a.i := i;
  return a;
end;

-- Loads and stores of one location (wrappers: this rumur version cannot
-- pass a record returned by a function straight to another function).
function load_o(b : buf_t; k : loc_t; o : owner_t) : val_t;
var a : addr_t;
begin
  a := owner_addr(k, o);
  return load(b, a);
end;

function load_slot(b : buf_t; mg : mag_t; i : 0..M - 1) : val_t;
var a : addr_t;
begin
  a := slot_addr(mg, i);
  return load(b, a);
end;

procedure store_o(var b : buf_t; k : loc_t; o : owner_t; v : val_t);
var a : addr_t;
begin
  a := owner_addr(k, o);
  store(b, a, v);
end;

procedure store_slot(var b : buf_t; mg : mag_t; i : 0..M - 1; v : val_t);
var a : addr_t;
begin
  a := slot_addr(mg, i);
  store(b, a, v);
end;

procedure store_count(var b : buf_t; mg : mag_t; v : val_t);
var a : addr_t;
begin
  a := count_addr(mg);
  store(b, a, v);
end;

-- Owner o is about to access its cache (loaded, lrounds, the magazine).
procedure touch(o : owner_t);
begin
  assert CHECK_TOUCH = 0 | !moving[o]
    "the owner touched its cache while a stealer was moving its rounds";
end;

procedure owner_idle(o : owner_t);
begin
  ow[o].pc := O_IDLE;
  ow[o].r := 0; ow[o].mg := 0; ow[o].b := 0; ow[o].x := 0; ow[o].cnt := 0;
  ow[o].op := ACQ;
end;

-- A block leaves the cache layer for a user: nobody may hold it already.
procedure hand_out(b : blk_t);
begin
  assert b != 0 "acquire handed out no block from a non-empty magazine";
  assert !held[b] "a block handed out while a user already holds it (in two hands)";
  held[b] := true;
end;

--------------------------------------------------------------- start state

startstate
var n : 0..NOWN;
begin
  -- Owner #1 has magazine 1 loaded, holding block 1; owner #k has magazine
  -- k, empty. The depot: magazine NOWN+1 (block 2) on the full stack,
  -- magazine NOWN+2 on the empty stack.
  n := 0;
  for o : owner_t do
    m_busy[o] := 0; m_steal[o] := 0;
    n := n + 1;
    m_lmag[o] := n;
    m_lr[o] := (n = 1) ? 1 : 0;
    obuf[o].n := 0;
    for i := 0 to BUF - 1 do undefine obuf[o].e[i]; endfor;
    owner_idle(o);
    flagged[o] := false; ipi[o] := false; waited[o] := false; moved[o] := false;
    moving[o] := false;
  endfor;
  for mg : mag_t do
    for i := 0 to M - 1 do m_slot[mg][i] := 0; endfor;
    m_count[mg] := 0;
    on_full[mg] := false; on_empty[mg] := false;
  endfor;
  m_slot[1][0] := 1;
  m_slot[NOWN + 1][0] := 2; m_count[NOWN + 1] := 1; on_full[NOWN + 1] := true;
  on_empty[NOWN + 2] := true;
  lock_free := true;
  sbuf.n := 0;
  for i := 0 to BUF - 1 do undefine sbuf.e[i]; endfor;
  spc := S_IDLE;
  steal_disabled := false;
  for b : 1..NB do held[b] := false; endfor;
end;

----------------------------------------------------------------- store buffers

ruleset o : owner_t do
  rule "owner: a buffered store reaches memory"
    obuf[o].n > 0
  ==>
  begin
    if is_cache_field(obuf[o].e[0].a) then touch(o); endif;
    drain_one(obuf[o]);
  end;
endruleset;

rule "stealer: a buffered store reaches memory"
  sbuf.n > 0
==>
begin
  drain_one(sbuf);
end;

------------------------------------------------------------------- owners

ruleset o : owner_t do

  -- magpool_acquire / magpool_release (cache_acquire_tc / cache_release_tc,
  -- and their slow paths) on the owner's own cache.
  rule "owner: acquire begins"
    ow[o].pc = O_IDLE
  ==>
  begin
    ow[o].op := ACQ;
    ow[o].pc := E_BUSY;
  end;

  ruleset b : 1..NB do
    rule "owner: release of a block the user holds begins"
      ow[o].pc = O_IDLE & held[b]
    ==>
    begin
      held[b] := false;           -- the user hands it to the pool
      ow[o].op := REL;
      ow[o].b := b;
      ow[o].pc := E_BUSY;
    end;
  endruleset;

  -- cache_enter(): atomic_store_relaxed(&tc->busy, 1); compiler_barrier()
  rule "owner: busy = 1 (relaxed store)"
    ow[o].pc = E_BUSY & obuf[o].n < BUF
  ==>
  begin
    store_o(obuf[o], L_BUSY, o, 1);
    ow[o].pc := E_STEAL;
  end;

  -- steal_pending(): atomic_load_acquire(&tc->steal)
  rule "owner: load steal"
    ow[o].pc = E_STEAL
  ==>
  begin
    if load_o(obuf[o], L_STEAL, o) != 0 then
      ow[o].pc := W_BUSY0;
    elsif ow[o].op = ACQ then
      ow[o].pc := A_FAST;
    else
      ow[o].pc := R_FAST;
    endif;
  end;

  -- wait_out_steal(): cache_leave(); lock and unlock the growth lock;
  -- cache_enter(); then the loop checks steal again.
  rule "owner: wait_out_steal: busy = 0 (release store)"
    ow[o].pc = W_BUSY0 & obuf[o].n < BUF
  ==>
  begin
    store_o(obuf[o], L_BUSY, o, 0);
    ow[o].pc := W_LOCK;
  end;

  rule "owner: wait_out_steal: lock the growth lock"
    ow[o].pc = W_LOCK & obuf[o].n = 0 & lock_free
  ==>
  begin
    lock_free := false;
    ow[o].pc := W_UNLOCK;
  end;

  rule "owner: wait_out_steal: unlock the growth lock"
    ow[o].pc = W_UNLOCK & obuf[o].n = 0
  ==>
  begin
    lock_free := true;
    ow[o].pc := E_BUSY;
  end;

  ---------------------------------------------------------------- acquire
  -- The fast path, once steal_pending() said no: b =
  -- tc->loaded->rounds[--tc->lrounds]; counter; cache_leave() (release
  -- store busy = 0); return b. Loads of the own cache and appends to the own
  -- store buffer form one rule (see the README: other threads see stores
  -- only through the drain rules).
  rule "owner: acquire: lrounds > 0: take the round; busy = 0 (release store); return it"
    ow[o].pc = A_FAST & obuf[o].n + 2 <= BUF
  ==>
  var r : 0..M;
  var mg : mag_t;
  var b : blk_t;
  begin
    touch(o);
    r := load_o(obuf[o], L_LR, o);
    if r > 0 then
      mg := load_o(obuf[o], L_LMAG, o);
      b := load_slot(obuf[o], mg, r - 1);
      store_o(obuf[o], L_LR, o, r - 1);
      store_o(obuf[o], L_BUSY, o, 0);
      hand_out(b);
      owner_idle(o);
    else
      ow[o].pc := A_DEPOT;
    endif;
  end;

  -- cache_acquire_slow: both magazines empty: depot_pop(&depot.full) (a
  -- locked CAS; the epoch read section around it is depot.m's business).
  -- The depot is a set here: the pop may return any full magazine.
  ruleset mg : mag_t do
    rule "owner: acquire: depot_pop(full) returns a magazine"
      ow[o].pc = A_DEPOT & obuf[o].n = 0 & on_full[mg]
    ==>
    begin
      touch(o);
      on_full[mg] := false;
      ow[o].x := mg;
      ow[o].cnt := m_count[mg];
      ow[o].pc := A_PUSHOLD;
    end;
  endruleset;

  rule "owner: acquire: depot_pop(full) returns NULL"
    ow[o].pc = A_DEPOT & obuf[o].n = 0 & forall mg : mag_t do !on_full[mg] endforall
  ==>
  begin
    ow[o].pc := A_FAIL;
  end;

  -- install_full(): depot_push(&depot.empty, the empty magazine) (a locked CAS)
  rule "owner: install_full: depot_push(empty, loaded)"
    ow[o].pc = A_PUSHOLD & obuf[o].n = 0
  ==>
  begin
    touch(o);
    on_empty[load_o(obuf[o], L_LMAG, o)] := true;
    ow[o].pc := A_SET;
  end;

  -- install_full(): tc->loaded = full; tc->lrounds = full->count; then the
  -- loop's `continue` checks steal_pending() again.
  rule "owner: install_full: store loaded = full, lrounds = count; loop"
    ow[o].pc = A_SET & obuf[o].n + 2 <= BUF
  ==>
  begin
    touch(o);
    store_o(obuf[o], L_LMAG, o, ow[o].x);
    store_o(obuf[o], L_LR, o, ow[o].cnt);
    ow[o].x := 0; ow[o].cnt := 0;
    ow[o].pc := E_STEAL;
  end;

  -- The depot is dry: cache_leave() and take_block_locked() under the
  -- growth lock (growth and the at-cap steal are cap.m's business).
  rule "owner: acquire: depot dry: busy = 0 (release store); return NULL"
    ow[o].pc = A_FAIL & obuf[o].n < BUF
  ==>
  begin
    store_o(obuf[o], L_BUSY, o, 0);
    owner_idle(o);
  end;

  ---------------------------------------------------------------- release
  -- The fast path: tc->loaded->rounds[tc->lrounds++] = block; counter;
  -- cache_leave() (release store busy = 0).
  rule "owner: release: lrounds < M: store the round, lrounds + 1; busy = 0 (release store)"
    ow[o].pc = R_FAST & obuf[o].n + 3 <= BUF
  ==>
  var r : 0..M;
  var mg : mag_t;
  begin
    touch(o);
    r := load_o(obuf[o], L_LR, o);
    if r < M then
      mg := load_o(obuf[o], L_LMAG, o);
      store_slot(obuf[o], mg, r, ow[o].b);
      store_o(obuf[o], L_LR, o, r + 1);
      store_o(obuf[o], L_BUSY, o, 0);
      owner_idle(o);
    else
      ow[o].r := r;
      ow[o].pc := R_DEPOT;
    endif;
  end;

  -- cache_release_slow, both magazines full: depot_get_empty() (a locked
  -- CAS; within the bounds an empty magazine is always there, so
  -- depot_mag_alloc is not needed).
  ruleset mg : mag_t do
    rule "owner: release: depot_get_empty"
      ow[o].pc = R_DEPOT & obuf[o].n = 0 & on_empty[mg]
    ==>
    begin
      touch(o);
      on_empty[mg] := false;
      ow[o].x := mg;
      ow[o].pc := R_COUNT;
    end;
  endruleset;

  -- tc->previous->count = tc->prounds
  rule "owner: release: store full->count"
    ow[o].pc = R_COUNT & obuf[o].n < BUF
  ==>
  begin
    touch(o);
    ow[o].mg := load_o(obuf[o], L_LMAG, o);
    store_count(obuf[o], ow[o].mg, ow[o].r);
    ow[o].pc := R_PUSH;
  end;

  -- depot_push(&depot.full, tc->previous) (a locked CAS)
  rule "owner: release: depot_push(full)"
    ow[o].pc = R_PUSH & obuf[o].n = 0
  ==>
  begin
    touch(o);
    on_full[ow[o].mg] := true;
    ow[o].pc := R_SET;
  end;

  -- tc->loaded = e; tc->lrounds = 0; the loop's `continue` checks
  -- steal_pending() again.
  rule "owner: release: store loaded = empty, lrounds = 0; loop"
    ow[o].pc = R_SET & obuf[o].n + 2 <= BUF
  ==>
  begin
    touch(o);
    store_o(obuf[o], L_LMAG, o, ow[o].x);
    store_o(obuf[o], L_LR, o, 0);
    ow[o].x := 0; ow[o].mg := 0; ow[o].r := 0;
    ow[o].pc := E_STEAL;
  end;

endruleset;

------------------------------------------------------------------ stealer

-- cache_steal_locked(p, self = none, want = NULL): every owner is a victim.
rule "stealer: lock the growth lock"
  spc = S_IDLE & !steal_disabled & lock_free & sbuf.n = 0
==>
begin
  lock_free := false;
  spc := S_FLAG;
end;

-- stop_owners_locked(): atomic_store_relaxed(&tc->steal, 1) per victim
ruleset o : owner_t do
  rule "stealer: steal = 1 (relaxed store)"
    spc = S_FLAG & !flagged[o] & sbuf.n < BUF
  ==>
  begin
    store_o(sbuf, L_STEAL, o, 1);
    flagged[o] := true;
    if forall p : owner_t do flagged[p] endforall then spc := S_FENCE; endif;
  end;
endruleset;

-- heavy_fence(): membarrier(). Entry is a full fence on the caller; every
-- other thread then executes one (rule below) before the call returns.
rule "stealer: heavy_fence(): membarrier() succeeds (or is not called)"
  spc = S_FENCE & sbuf.n = 0
==>
begin
  if FENCE = 1 then
    for o : owner_t do ipi[o] := true; endfor;
    spc := S_IPI;
  else
    spc := S_WAIT;
  endif;
end;

-- membarrier() fails: clear the steal flags, steal nothing, and never
-- steal again (stealing disabled). With FAIL_STEALS the stealer goes on.
rule "stealer: membarrier() fails"
  spc = S_FENCE & FENCE = 1 & sbuf.n = 0
==>
begin
  if FAIL_STEALS = 1 then
    spc := S_WAIT;
  else
    steal_disabled := true;
    for o : owner_t do waited[o] := true; moved[o] := true; endfor;
    spc := S_RELEASE;
  endif;
end;

ruleset o : owner_t do
  rule "membarrier: full fence on an owner's CPU (its store buffer drains)"
    ipi[o]
  ==>
  begin
    while obuf[o].n > 0 do
      if is_cache_field(obuf[o].e[0].a) then touch(o); endif;
      drain_one(obuf[o]);
    endwhile;
    ipi[o] := false;
  end;
endruleset;

rule "stealer: membarrier() returns"
  spc = S_IPI & forall o : owner_t do !ipi[o] endforall
==>
begin
  spc := S_WAIT;
end;

-- while (atomic_load_acquire(&tc->busy)) sched_yield();
ruleset o : owner_t do
  rule "stealer: load busy == 0 (acquire)"
    spc = S_WAIT & !waited[o] & load_o(sbuf, L_BUSY, o) = 0
  ==>
  begin
    waited[o] := true;
    moving[o] := true;
    if forall p : owner_t do waited[p] endforall then spc := S_MOVE; endif;
  end;
endruleset;

-- cache_flush_locked() on victim o (one step: the owners are stopped, and
-- none of their steps touches what this one does unless the protocol is
-- broken, which touch() reports): if lrounds != 0, e = depot_get_empty()
-- (locked CAS); loaded->count = lrounds; depot_push(full, loaded) (locked
-- CAS); then loaded = e and lrounds = 0 are buffered stores.
procedure flushed(o : owner_t);
begin
  moved[o] := true;
  if forall p : owner_t do moved[p] endforall then spc := S_RELEASE; endif;
end;

ruleset o : owner_t do
  rule "stealer: cache_flush_locked(victim): lrounds == 0, nothing to move"
    spc = S_MOVE & !moved[o] & load_o(sbuf, L_LR, o) = 0
  ==>
  begin
    flushed(o);
  end;

  ruleset e : mag_t do
    rule "stealer: cache_flush_locked(victim): move the loaded magazine to the depot"
      spc = S_MOVE & !moved[o] & load_o(sbuf, L_LR, o) != 0
      & sbuf.n + 2 <= BUF & on_empty[e]
    ==>
    var mg : mag_t;
    begin
      on_empty[e] := false;                          -- depot_get_empty()
      mg := load_o(sbuf, L_LMAG, o);
      m_count[mg] := load_o(sbuf, L_LR, o);          -- drained by the push's locked CAS
      on_full[mg] := true;                           -- depot_push_stamped(full)
      store_o(sbuf, L_LMAG, o, e);                   -- *slot = e
      store_o(sbuf, L_LR, o, 0);                     -- *rounds = 0
      flushed(o);
    end;
  endruleset;
endruleset;

-- release_owners_locked(): atomic_store_release(&tc->steal, 0)
ruleset o : owner_t do
  rule "stealer: steal = 0 (release store)"
    spc = S_RELEASE & flagged[o] & sbuf.n < BUF
  ==>
  begin
    store_o(sbuf, L_STEAL, o, 0);
    flagged[o] := false;
    moving[o] := false;
    if forall p : owner_t do !flagged[p] endforall then spc := S_UNLOCK; endif;
  end;
endruleset;

rule "stealer: unlock the growth lock"
  spc = S_UNLOCK & sbuf.n = 0
==>
begin
  lock_free := true;
  for o : owner_t do
    ipi[o] := false; waited[o] := false; moved[o] := false;
  endfor;
  spc := S_IDLE;
end;

---------------------------------------------------------------- properties

-- Where each block is, counted from memory: in a user's hands, in a cache's
-- loaded magazine below lrounds, or in a magazine on the full stack below
-- its count. Checked when nothing is in flight (every thread idle, every
-- store buffer empty), where it must be exactly once.
function copies(b : blk_t) : 0..2 * NMAG + 1;
var n : 0..2 * NMAG + 1;
begin
  n := 0;
  if held[b] then n := n + 1; endif;
  for o : owner_t do
    for i := 0 to M - 1 do
      if i < m_lr[o] & m_slot[m_lmag[o]][i] = b then n := n + 1; endif;
    endfor;
  endfor;
  for mg : mag_t do
    for i := 0 to M - 1 do
      if on_full[mg] & i < m_count[mg] & m_slot[mg][i] = b then n := n + 1; endif;
    endfor;
  endfor;
  return n;
end;

function quiescent() : boolean;
begin
  return spc = S_IDLE & sbuf.n = 0
         & forall o : owner_t do ow[o].pc = O_IDLE & obuf[o].n = 0 endforall;
end;

invariant "at quiescence every block is in exactly one place (none lost, none in two hands)"
  quiescent() -> forall b : 1..NB do copies(b) = 1 endforall;

invariant "at quiescence the magazines are where the caches and the depot say"
  quiescent() ->
    forall mg : mag_t do
      !(on_full[mg] & on_empty[mg])
      & (on_full[mg] | on_empty[mg]
         | exists o : owner_t do m_lmag[o] = mg endexists)
    endforall
    & forall o : owner_t do
        !on_full[m_lmag[o]] & !on_empty[m_lmag[o]]
        & forall p : owner_t do o = p | m_lmag[o] != m_lmag[p] endforall
      endforall;

-- Non-vacuity (a cover never hit fails the check).
cover "a steal moves rounds out of a cache" spc = S_MOVE & exists o : owner_t do m_lr[o] > 0 endexists;
cover "an owner sees steal = 1 and steps aside" exists o : owner_t do ow[o].pc = W_LOCK endexists;
cover "the stealer waits for an owner inside an operation"
  spc = S_WAIT & exists o : owner_t do !waited[o] & m_busy[o] = 1 & ow[o].pc != O_IDLE endexists;
cover "an owner's busy = 1 is still in its store buffer when it loads steal"
  exists o : owner_t do ow[o].pc = E_STEAL & obuf[o].n > 0 & m_busy[o] = 0 endexists;
cover "membarrier() drains an owner's pending busy = 1"
  FENCE = 0
  | exists o : owner_t do
      ipi[o] & exists i : 0..BUF - 1 do
        i < obuf[o].n & obuf[o].e[i].a.k = L_BUSY & obuf[o].e[i].v = 1
      endexists
    endexists;
cover "membarrier() failed: stealing disabled" FENCE = 0 | steal_disabled;
