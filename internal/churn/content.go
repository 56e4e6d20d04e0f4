package churn

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Kind is the kind of content WriteFile writes.
type Kind int

// The kinds of files, as an ML team keeps them.
const (
	Checkpoint Kind = iota // safetensors-like float32 weights: nearly incompressible
	CSVLog                 // training log in CSV, one row per step
	JSONL                  // metrics in JSON lines
	Notebook               // Jupyter notebook with text outputs and base64 PNG plots
	Small                  // config.yaml, params.json, eval.csv, or notes, after the file's name
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// WriteFile writes a new file at path (its folders are made) of about size
// bytes of kind k, derived from seed alone: the same arguments give the
// same bytes. Text files end at the first line past size; checkpoints are
// exactly size bytes (a multiple of 4). It returns the bytes written.
func WriteFile(path string, k Kind, size int64, seed uint64) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: f}
	bw := bufio.NewWriterSize(cw, int(min(1*mib, size+4*kib)))
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	switch k {
	case Checkpoint:
		err = genCheckpoint(bw, r, size)
	case CSVLog:
		err = genCSVLog(bw, r, size)
	case JSONL:
		err = genJSONL(bw, r, size)
	case Notebook:
		err = genNotebook(bw, r, size)
	case Small:
		err = genSmall(bw, r, size, filepath.Base(path))
	default:
		err = fmt.Errorf("unknown kind %d", k)
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return cw.n, fmt.Errorf("writing %s: %w", path, err)
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// genCheckpoint writes a safetensors-like file: an 8-byte header length, a
// JSON header naming the tensors, then float32 weights. Each weight has a
// random sign and mantissa and an exponent between 2^-10 and 2^-3 (the range
// of trained weights), so zstd saves only a few percent, as on real ones.
func genCheckpoint(w *bufio.Writer, r *rand.Rand, size int64) error {
	type tensor struct {
		Dtype       string   `json:"dtype"`
		Shape       []int64  `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	// The header is padded with spaces (as safetensors allows) to a fixed
	// area, so that the file is exactly size bytes.
	area := 1024 + 128*(size/(64*mib))
	dataLen := max(0, (size-area)&^3)
	var off int64
	for layer := 0; off < dataLen; layer++ {
		n := min(dataLen-off, 4096*4096*4)
		header[fmt.Sprintf("model.layers.%d.weight", layer)] = tensor{"F32", []int64{n / 4}, [2]int64{off, off + n}}
		off += n
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return err
	}
	if pad := area - 8 - int64(len(hj)); pad > 0 && dataLen > 0 {
		hj = append(hj, strings.Repeat(" ", int(pad))...)
	}
	var hl [8]byte
	binary.LittleEndian.PutUint64(hl[:], uint64(len(hj)))
	w.Write(hl[:])
	w.Write(hj)

	buf := make([]byte, 1*mib)
	for left := dataLen; left > 0; {
		for i := 0; i < len(buf); i += 8 {
			x := r.Uint64()
			binary.LittleEndian.PutUint64(buf[i:], weight(x)|weight(x>>32)<<32)
		}
		n := min(left, int64(len(buf)))
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		left -= n
	}
	return nil
}

// weight turns 32 random bits into the bits of a float32 weight.
func weight(u uint64) uint64 {
	u &= 0xffffffff
	return u&0x807fffff | (117+(u>>23)&7)<<23
}

// csvHeader is the first line of every training log.
const csvHeader = "episode,step,reward,episode_return,loss,value_loss,entropy,lr,grad_norm,wall_time\n"

// csvLog is the state of a training log between rows, so that rows can be
// appended to an existing log (see Apply) where it left off.
type csvLog struct {
	episode, step int
	ret, reward   float64
	clock, steps  float64
}

func genCSVLog(w *bufio.Writer, r *rand.Rand, size int64) error {
	w.WriteString(csvHeader)
	n := int64(w.Buffered())
	l := &csvLog{reward: r.Float64()}
	l.clock = 1.7e9 + r.Float64()*1e7
	l.steps = 2e5 + r.Float64()*1e6
	return l.write(w, r, n, size)
}

// write writes rows until n, the bytes written so far, reaches size.
func (l *csvLog) write(w io.Writer, r *rand.Rand, n, size int64) error {
	var b []byte
	for ; n < size; l.step++ {
		if l.step%1000 == 0 {
			l.episode++
			l.ret = 0
		}
		l.reward += (r.Float64() - 0.48) * 0.05
		l.ret += l.reward
		t := float64(l.step) / l.steps
		loss := 2.5*math.Exp(-3*t) + r.NormFloat64()*0.02
		l.clock += 0.05 + r.Float64()*0.01
		b = b[:0]
		b = strconv.AppendInt(b, int64(l.episode), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(l.step), 10)
		b = append(b, ',')
		b = strconv.AppendFloat(b, l.reward, 'f', 6, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, l.ret, 'f', 4, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, loss, 'f', 6, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, loss*0.4+r.Float64()*0.01, 'f', 6, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, 1.2-0.5*t+r.Float64()*0.05, 'f', 5, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, 3e-4*0.5*(1+math.Cos(math.Pi*math.Min(t, 1))), 'e', 4, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, math.Abs(r.NormFloat64())*0.8+0.1, 'f', 4, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, l.clock, 'f', 3, 64)
		b = append(b, '\n')
		if _, err := w.Write(b); err != nil {
			return err
		}
		n += int64(len(b))
	}
	return nil
}

func genJSONL(w *bufio.Writer, r *rand.Rand, size int64) error {
	var (
		b     []byte
		n     int64
		loss  = 3 + r.Float64()
		acc   = 0.1
		clock = 1.7e9 + r.Float64()*1e7
	)
	splits := []string{"train", "train", "train", "train", "val"}
	for step := 0; n < size; step++ {
		loss = math.Max(0.05, loss*0.99995+r.NormFloat64()*0.01)
		acc = math.Min(0.99, acc+r.Float64()*0.0002)
		clock += 0.2 + r.Float64()*0.05
		b = b[:0]
		b = append(b, `{"step":`...)
		b = strconv.AppendInt(b, int64(step), 10)
		b = append(b, `,"epoch":`...)
		b = strconv.AppendInt(b, int64(step/5000), 10)
		b = append(b, `,"split":"`...)
		b = append(b, splits[step%len(splits)]...)
		b = append(b, `","loss":`...)
		b = strconv.AppendFloat(b, loss, 'f', 6, 64)
		b = append(b, `,"accuracy":`...)
		b = strconv.AppendFloat(b, acc, 'f', 5, 64)
		b = append(b, `,"lr":`...)
		b = strconv.AppendFloat(b, 1e-4*(1+r.Float64()*0.001), 'e', 5, 64)
		b = append(b, `,"tokens_per_sec":`...)
		b = strconv.AppendFloat(b, 41000+r.NormFloat64()*900, 'f', 1, 64)
		b = append(b, `,"gpu_mem_gb":`...)
		b = strconv.AppendFloat(b, 61.5+r.Float64()*2, 'f', 2, 64)
		b = append(b, `,"ts":`...)
		b = strconv.AppendFloat(b, clock, 'f', 3, 64)
		b = append(b, "}\n"...)
		if _, err := w.Write(b); err != nil {
			return err
		}
		n += int64(len(b))
	}
	return nil
}

var codeLines = []string{
	"import numpy as np\n", "import pandas as pd\n", "import torch\n", "import matplotlib.pyplot as plt\n",
	"df = pd.read_csv('../runs/run-0001/metrics.csv')\n", "df['reward'].rolling(100).mean().plot()\n",
	"model = torch.load('checkpoints/step-005000.safetensors')\n", "for epoch in range(10):\n",
	"    loss = train_one_epoch(model, loader, optimizer)\n", "    print(f'epoch {epoch}: loss {loss:.4f}')\n",
	"plt.figure(figsize=(12, 4))\n", "plt.show()\n", "cfg = yaml.safe_load(open('config.yaml'))\n",
	"x = np.linspace(0, 1, 1000)\n", "scores = evaluate(model, val_loader)\n", "scores.describe()\n",
}

var words = strings.Fields(`the model reward loss learning rate batch size warmup schedule
	checkpoint evaluation baseline ablation seed variance policy value entropy gradient clip
	dataset split validation overfit tokenizer attention layer head optimizer adam weight decay
	converges diverges after steps episode return improves drops plateau sweep best run`)

func sentence(r *rand.Rand, n int) string {
	var sb strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(words[r.IntN(len(words))])
	}
	return sb.String()
}

// genNotebook writes an nbformat 4 notebook: code and markdown cells, text
// outputs, and PNG plots (base64 of random bytes: nearly incompressible).
func genNotebook(w *bufio.Writer, r *rand.Rand, size int64) error {
	type output map[string]any
	type cell struct {
		CellType       string         `json:"cell_type"`
		ExecutionCount *int           `json:"execution_count,omitempty"`
		Metadata       map[string]any `json:"metadata"`
		Outputs        []output       `json:"outputs,omitempty"`
		Source         []string       `json:"source"`
	}
	var cells []cell
	var est int64
	for exec := 1; est < size; exec++ {
		if r.IntN(3) == 0 {
			src := []string{"## " + sentence(r, 5) + "\n", "\n", sentence(r, 30) + "\n"}
			cells = append(cells, cell{CellType: "markdown", Metadata: map[string]any{}, Source: src})
			est += 300
			continue
		}
		var src []string
		for i := 0; i < 3+r.IntN(12); i++ {
			src = append(src, codeLines[r.IntN(len(codeLines))])
		}
		var outs []output
		var text []string
		for i := 0; i < r.IntN(40); i++ {
			text = append(text, fmt.Sprintf("epoch %d: loss %.4f acc %.4f\n", i, r.Float64()*2, r.Float64()))
		}
		outs = append(outs, output{"output_type": "stream", "name": "stdout", "text": text})
		est += int64(40*len(text) + 40*len(src) + 200)
		if r.IntN(3) == 0 {
			png := make([]byte, 16*kib+r.IntN(48*kib))
			for i := 0; i+8 <= len(png); i += 8 {
				binary.LittleEndian.PutUint64(png[i:], r.Uint64())
			}
			copy(png, "\x89PNG\r\n\x1a\n")
			data := base64.StdEncoding.EncodeToString(png)
			outs = append(outs, output{"output_type": "display_data", "metadata": map[string]any{},
				"data": map[string]any{"image/png": data, "text/plain": []string{"<Figure size 1200x400 with 1 Axes>"}}})
			est += int64(len(data))
		}
		ec := exec
		cells = append(cells, cell{CellType: "code", ExecutionCount: &ec, Metadata: map[string]any{}, Outputs: outs, Source: src})
	}
	nb := map[string]any{
		"cells": cells,
		"metadata": map[string]any{
			"kernelspec":    map[string]string{"display_name": "Python 3", "language": "python", "name": "python3"},
			"language_info": map[string]string{"name": "python", "version": "3.11.4"},
		},
		"nbformat": 4, "nbformat_minor": 5,
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(nb)
}

func genSmall(w *bufio.Writer, r *rand.Rand, size int64, name string) error {
	var n int64
	put := func(s string) {
		w.WriteString(s)
		n += int64(len(s))
	}
	switch name {
	case "config.yaml":
		put("# experiment configuration\n")
		for i := 0; n < size; i++ {
			put(fmt.Sprintf("%s_%d:\n  lr: %.2e\n  batch_size: %d\n  warmup_steps: %d\n  dropout: %.2f\n  seed: %d\n",
				words[r.IntN(len(words))], i, r.Float64()*1e-3, 8<<r.IntN(6), 100*r.IntN(50), r.Float64()*0.5, r.IntN(1<<20)))
		}
	case "params.json":
		m := map[string]any{}
		for i := 0; n < size; i++ {
			k := fmt.Sprintf("%s_%s_%d", words[r.IntN(len(words))], words[r.IntN(len(words))], i)
			m[k] = math.Round(r.Float64()*1e6) / 1e6
			n += int64(len(k)) + 14
		}
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return err
		}
		w.Write(append(b, '\n'))
	case "eval.csv":
		put("checkpoint,split,metric,value\n")
		for i := 0; n < size; i++ {
			put(fmt.Sprintf("step-%06d,%s,%s,%.6f\n", (i/4+1)*5000, []string{"val", "test"}[r.IntN(2)],
				[]string{"accuracy", "f1", "bleu", "reward"}[i%4], r.Float64()))
		}
	default:
		put("# Notes\n\n")
		for n < size {
			put(sentence(r, 8+r.IntN(20)) + ".\n")
		}
	}
	return nil
}
