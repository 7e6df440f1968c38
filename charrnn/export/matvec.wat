;; The page's one hot loop, y = W x + b, in WebAssembly SIMD (4 float32 lanes): about 4x the speed of the
;; same loop in plain JavaScript. writer.html embeds its binary (base64); rebuild it after an edit with
;;     npx -p wabt@1.0.36 wat2wasm charrnn/export/matvec.wat -o /tmp/matvec.wasm && base64 -w0 /tmp/matvec.wasm
;; and paste the result into MATVEC_WASM in writer.html. Without WebAssembly SIMD the page runs the same
;; product in JavaScript (the browser test runs both).
;; W is row-major (rows, cols) float32 at byte offset w; x (cols), b (rows) and y (rows) float32; cols is a
;; multiple of 4 (the page pads every matrix row and input vector with zeros); all offsets 16-byte aligned.
(module
  (memory (import "env" "memory") 1)
  (func (export "matvec") (param $w i32) (param $x i32) (param $b i32) (param $y i32) (param $rows i32) (param $cols i32)
    (local $r i32) (local $j i32) (local $acc v128) (local $row i32) (local $stride i32)
    (local.set $stride (i32.shl (local.get $cols) (i32.const 2)))
    (local.set $row (local.get $w))
    (block $rows_done
      (loop $rows_loop
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $acc (v128.const f32x4 0 0 0 0))
        (local.set $j (i32.const 0))
        (block $cols_done
          (loop $cols_loop
            (br_if $cols_done (i32.ge_u (local.get $j) (local.get $stride)))
            (local.set $acc
              (f32x4.add (local.get $acc)
                (f32x4.mul (v128.load (i32.add (local.get $row) (local.get $j)))
                           (v128.load (i32.add (local.get $x) (local.get $j))))))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $cols_loop)))
        (f32.store (i32.add (local.get $y) (i32.shl (local.get $r) (i32.const 2)))
          (f32.add
            (f32.add (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
                     (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc))))
            (f32.load (i32.add (local.get $b) (i32.shl (local.get $r) (i32.const 2))))))
        (local.set $row (i32.add (local.get $row) (local.get $stride)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rows_loop)))))
