"""Student-like submissions in the style of the course's Colab notebooks, graded with
rubrics/hw2_course.toml by tests/test_golden.py.

Students copy the course's template notebooks (reference/hw2/course/release/), fill in the
TODO cells in Colab on a GPU, keep their Colab habits and hand the notebooks in as they are.
Each notebook here is such a copy: the template with its TODO cells answered in a student's
own style (not this project's solution) and the habits of real submissions
(../shared/notes/real-submissions.md). What each case must score is written by hand in
expected.csv beside this file, never taken from the grader's output.

    .venv/bin/python tests/corpus/make_corpus.py OUT_DIR     # writes the zips there

The zips are built at test time (nothing binary is committed); member times are fixed, so the
same sources give the same bytes, and identical notebooks in several cases execute once.
"""
from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TEMPLATE = REPO / "reference" / "hw2" / "course" / "release"
CNN, RNN, SEQ = "hw2_cnn.ipynb", "hw2_rnn.ipynb", "08-seq_classification.ipynb"
FIXED_TIME = (2025, 10, 4, 21, 0, 0)


def theory_pdf(net_id: str) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    with PdfPages(buf, metadata={"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None}) as pdf:
        fig = plt.figure(figsize=(8.5, 11))
        fig.text(0.1, 0.9, f"HW2 theory ({net_id})", fontsize=16)
        fig.text(0.1, 0.85, "1.1 (a) 5 x 2", fontsize=11)
        pdf.savefig(fig)
        plt.close(fig)
    return buf.getvalue()


def student(template: str, answers: dict[str, str], insert: list[tuple[str, str]] = (),
            replace: list[tuple[str, str]] = ()) -> str:
    """The template notebook with cells answered: ``answers`` maps a text that occurs in exactly
    one cell (or ``after:<text>``: the first code cell after the markdown cell holding it) to
    that cell's new source; ``insert`` puts (after-text, new cell; ``md:`` for markdown) after
    the cell holding after-text; ``replace`` edits (old, new) inside the one cell holding old, or
    (anchor, old, new) inside the one cell holding anchor."""
    nb = nbformat.read(str(TEMPLATE / template), as_version=4)

    def find(text: str) -> int:
        if text.startswith("after:"):
            md = find(text[len("after:"):])
            return next(i for i in range(md + 1, len(nb.cells)) if nb.cells[i].cell_type == "code")
        hits = [i for i, c in enumerate(nb.cells) if text in c.source]
        if len(hits) != 1:
            raise SystemExit(f"make_corpus: {text!r} is in {len(hits)} cells of {template}")
        return hits[0]

    for text, source in answers.items():
        nb.cells[find(text)].source = source.strip("\n")
    for edit in replace:
        anchor, old, new = edit if len(edit) == 3 else (edit[0], *edit)
        i = find(anchor)
        if nb.cells[i].source.count(old) != 1:
            raise SystemExit(f"make_corpus: {old!r} is not once in the cell of {anchor!r}")
        nb.cells[i].source = nb.cells[i].source.replace(old, new)
    for after, source in insert:
        i = find(after)
        kind = nbformat.v4.new_markdown_cell if source.startswith("md:") else nbformat.v4.new_code_cell
        cell = kind(source[3:].strip("\n") if source.startswith("md:") else source.strip("\n"))
        nb.cells.insert(i + 1, cell)
    for k, cell in enumerate(nb.cells):          # as Colab saves them: ids and counts of a real run
        cell.id = f"c{k:03d}"
    return nbformat.writes(nb) + "\n"


# ============================================================== hw2_cnn
GPU_CNN_MODEL = '''
class ResBlock(nn.Module):
    """two 3x3 convs with a skip connection, like in ResNet"""
    def __init__(self, ch):
        super().__init__()
        self.conv_a = nn.Conv2d(ch, ch, kernel_size=3, padding=1)
        self.bn_a = nn.BatchNorm2d(ch)
        self.conv_b = nn.Conv2d(ch, ch, kernel_size=3, padding=1)
        self.bn_b = nn.BatchNorm2d(ch)

    def forward(self, x):
        identity = x
        out = F.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_b(self.conv_b(out))
        return F.relu(out + identity)


class CNN_Solution(nn.Module):
    def __init__(self):
        super().__init__()
        # 256x256 is a lot of pixels: average 4x4 patches first, then two conv blocks
        self.stem = nn.Sequential(
            nn.AvgPool2d(kernel_size=4),
            nn.Conv2d(3, 16, kernel_size=3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.layer1 = nn.Sequential(
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.res = ResBlock(32)
        self.gap = nn.AdaptiveMaxPool2d((1, 1))
        self.flat = nn.Flatten()
        self.fc = nn.Linear(32, 2)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer1(x)
        x = self.res(x)
        x = self.gap(x)
        return self.fc(self.flat(x))
'''

LOSS_AND_STEP = '''
def get_loss_and_correct(model, batch, criterion, device):
    # Implement forward pass and loss calculation for one batch.
    # Remember to move the batch to device.
    #
    # Return a tuple:
    # - loss for the batch (Tensor)
    # - number of correctly classified examples in the batch (Tensor)
    data, target = batch
    data = data.to(device)
    target = target.to(device)
    pred = model(data)
    loss = criterion(pred, target)
    correct = torch.sum(torch.argmax(pred, dim=1) == target)
    return loss, correct


def step(loss, optimizer):
    # Implement backward pass and update.
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
'''

GPU_CNN_SETUP = '''
N_EPOCHS = 20
BATCH_SIZE = 32

train_dataloader = torch.utils.data.DataLoader(train_dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=4)
validation_dataloader = torch.utils.data.DataLoader(validation_dataset, batch_size=BATCH_SIZE, num_workers=4)
model = CNN_Solution()

criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.002)

device = torch.device("cuda:0")
print(torch.cuda.get_device_name(0))
model = model.cuda()
criterion = criterion.cuda()
'''

TESTING = '''
# test accuracy
test_dataloader = torch.utils.data.DataLoader(test_dataset, batch_size=64, shuffle=False)
model.eval()
correct_imgs, wrong_imgs = [], []
n_correct = 0
with torch.no_grad():
    for imgs, labels in test_dataloader:
        imgs, labels = imgs.to(device), labels.to(device)
        preds = model(imgs).argmax(1)
        n_correct += (preds == labels).sum().item()
        for img, p, l in zip(imgs, preds, labels):
            if p == l and len(correct_imgs) < 4:
                correct_imgs.append((img, p.item()))
            if p != l and len(wrong_imgs) < 4:
                wrong_imgs.append((img, p.item()))
print(f"Test accuracy: {n_correct / len(test_dataset):.4f} ({n_correct}/{len(test_dataset)})")

names = ['cat', 'dog']
plt.figure(figsize=(10, 5))
for k, (img, p) in enumerate(correct_imgs + wrong_imgs):
    plt.subplot(2, 4, k + 1)
    show_normalized_image(img, ('right: ' if k < len(correct_imgs) else 'wrong: ') + names[p])
plt.show()
'''

FEATURE_MAPS = '''
model.eval()
x = image.unsqueeze(0).to(device)
with torch.no_grad():
    out1 = nn.Sequential(*list(model.children())[:1])(x)
    out2 = nn.Sequential(*list(model.children())[:2])(x)
    out3 = nn.Sequential(*list(model.children())[:3])(x)
plot_intermediate_output(out1, 'after stem')
plot_intermediate_output(out2, 'after layer1')
plot_intermediate_output(out3, 'after the residual block')
'''

OVERFIT_ANSWER = '''
The model does not really overfit: train and validation accuracy stay close the whole time and the
validation loss goes down together with the training loss. I think this is because the network is
quite small, it uses global pooling instead of a big fully connected layer, and the augmentations
(flips, rotations, blur, color jitter) make the training images different every epoch.
'''

FILTERS_ANSWER = '''
The first layer reacts to colors and edges (some maps light up on the background, some on the
borders of the shapes). After layer1 the maps are smaller and more abstract, and after the
residual block only a few channels are active, mostly around the object that decides the class.
'''

# Smaller images to train faster on Colab: both transforms resize to 128 instead of 256.
SMALLER_IMAGES = [("transforms.Resize((256, 256)),\n    transforms.RandomHorizontalFlip(),",
                   "transforms.Resize((128, 128)),\n    transforms.RandomHorizontalFlip(),"),
                  ("validation_transforms = transforms.Compose([\n    transforms.Resize((256, 256)),",
                   "validation_transforms = transforms.Compose([\n    transforms.Resize((256, 256)),",
                   "validation_transforms = transforms.Compose([\n    transforms.Resize((128, 128)),")]

CNN_GPU = student(CNN, {
    "class CNN_Solution(nn.Module):": GPU_CNN_MODEL,
    "def get_loss_and_correct(model, batch, criterion, device):": LOSS_AND_STEP,
    "criterion = None # TODO": GPU_CNN_SETUP,
    "put your answer here": OVERFIT_ANSWER,
    "after:### Testing": TESTING,
    "after:Pick a few intermediate representations": FEATURE_MAPS,
    "Your answer here": FILTERS_ANSWER,
})


COLAB_CNN_MODEL = """
class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1)   # 1x1 conv so the residual has the right channels

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.max_pool2d(F.relu(y + self.shortcut(x)), 2)


class CNN_Solution(nn.Module):
    def __init__(self):
        super().__init__()
        self.b1 = Block(3, 16)
        self.b2 = Block(16, 32)
        self.b3 = Block(32, 32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(32, 2)

    def forward(self, x):
        x = F.avg_pool2d(x, 2)  # 128 -> 64
        x = self.b3(self.b2(self.b1(x)))
        x = self.pool(x).flatten(1)
        return self.fc(self.drop(x))
"""

COLAB_LOSS_AND_STEP = """
def get_loss_and_correct(model, batch, criterion, device):
    images, labels = [t.to(device) for t in batch]
    logits = model(images)
    loss = criterion(logits, labels)
    correct = (logits.argmax(1) == labels).sum()
    return loss, correct


def step(loss, optimizer):
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

COLAB_SETUP = """
N_EPOCHS = 12
BATCH_SIZE = 32

train_dataloader = torch.utils.data.DataLoader(train_dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=4)
validation_dataloader = torch.utils.data.DataLoader(validation_dataset, batch_size=BATCH_SIZE, num_workers=4)
model = CNN_Solution()

criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.002, weight_decay=1e-4)

if torch.cuda.is_available():
    model = model.cuda()
    criterion = criterion.cuda()
    device = 'cuda:0'
else:
    device = 'cpu'
"""

COLAB_TESTING = """
test_loader = torch.utils.data.DataLoader(test_dataset, batch_size=100)
all_preds, all_labels = [], []
model.eval()
with torch.no_grad():
    for x, y in test_loader:
        all_preds.append(model(x.to(device)).argmax(1).cpu())
        all_labels.append(y)
all_preds, all_labels = torch.cat(all_preds), torch.cat(all_labels)
print('test accuracy =', (all_preds == all_labels).float().mean().item())

right = (all_preds == all_labels).nonzero().flatten()[:3]
wrong = (all_preds != all_labels).nonzero().flatten()[:3]
fig = plt.figure(figsize=(9, 3))
for k, idx in enumerate(list(right) + list(wrong)):
    plt.subplot(1, 6, k + 1)
    show_normalized_image(test_dataset[idx][0], 'ok' if k < len(right) else 'wrong')
plt.show()
"""

# On Colab the student also tried the model on a photo of their own cat, uploaded in the browser.
OWN_IMAGE = """
from google.colab import files
uploaded = files.upload()
my_cat = Image.open('cat.png').convert('RGB')
pred = model(validation_transforms(my_cat).unsqueeze(0).to(device)).argmax(1).item()
print('my cat is a', ['cat', 'dog'][pred])
"""

COLAB_FEATURES = """
children = list(model.children())
with torch.no_grad():
    x = F.avg_pool2d(image.unsqueeze(0).to(device), 2)
    for k in range(3):
        x = children[k](x)
        plot_intermediate_output(x, f'after block {k + 1}')
"""

SAVE_AND_DOWNLOAD = """
torch.save(model.state_dict(), 'cnn.pt')
from google.colab import files
files.download('cnn.pt')
"""

CNN_COLAB = student(CNN, {
    "class CNN_Solution(nn.Module):": COLAB_CNN_MODEL,
    "def get_loss_and_correct(model, batch, criterion, device):": COLAB_LOSS_AND_STEP,
    "criterion = None # TODO": COLAB_SETUP,
    "put your answer here": "It overfits a little bit at the end, the training accuracy is higher than the "
                            "validation accuracy, but dropout and the augmentations help so it is not too bad.",
    "after:### Testing": COLAB_TESTING,
    "after:Pick a few intermediate representations": COLAB_FEATURES,
    "Your answer here": "The first filters look like edge and color detectors. Deeper layers are blurrier and "
                        "only respond to some parts of the image, probably the important shapes.",
}, insert=[
    ("import math", "!pip install -q torchvision\n!nvidia-smi"),
    ("import math", "from google.colab import drive\ndrive.mount('/content/drive')"),
    ("test accuracy =", OWN_IMAGE),
    ("after block", SAVE_AND_DOWNLOAD),
], replace=[
    # Colab's working folder is /content: the paths are written absolute.
    ("validation_dataset, test_dataset = torch.utils.data.random_split(", "'./cats_and_dogs_filtered/train'",
     "'/content/cats_and_dogs_filtered/train'"),
    ("validation_dataset, test_dataset = torch.utils.data.random_split(", "'./cats_and_dogs_filtered/validation'",
     "'/content/cats_and_dogs_filtered/validation'"),
    ("validation_dataset, test_dataset = torch.utils.data.random_split(",
     "transforms.Resize((256, 256)),\n    transforms.RandomHorizontalFlip(),",
     "transforms.Resize((128, 128)),\n    transforms.RandomHorizontalFlip(),"),
    ("validation_dataset, test_dataset = torch.utils.data.random_split(",
     "validation_transforms = transforms.Compose([\n    transforms.Resize((256, 256)),",
     "validation_transforms = transforms.Compose([\n    transforms.Resize((128, 128)),"),
])

# Trained briefly, then its testing cell uses a name it never defined (NameError of its own);
# the written answers are not filled in.
BROKEN_TESTING = """
model.eval()
correct = 0
with torch.no_grad():
    for x, y in test_loader:
        correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
print('test acc', correct / len(test_dataset))
"""

CNN_BROKEN = student(CNN, {
    "class CNN_Solution(nn.Module):": GPU_CNN_MODEL,
    "def get_loss_and_correct(model, batch, criterion, device):": LOSS_AND_STEP,
    "criterion = None # TODO": GPU_CNN_SETUP.replace("N_EPOCHS = 20", "N_EPOCHS = 2").replace(
        'device = torch.device("cuda:0")\nprint(torch.cuda.get_device_name(0))\nmodel = model.cuda()\n'
        'criterion = criterion.cuda()', 'device = "cpu"'),
    "after:### Testing": BROKEN_TESTING,
})


# ============================================================== hw2_rnn
GRU_MEMORY = '''
class GRUMemory(torch.nn.Module):

  def __init__(self, hidden_size):
    super().__init__()
    #TODO: initialize your submodules
    self.gru = torch.nn.GRU(input_size=N + 1, hidden_size=hidden_size, num_layers=1, batch_first=True)
    self.linear = torch.nn.Linear(hidden_size, N + 1)

  def forward(self, x):
    # inputs:
    # x - tensor of shape (batch size, seq length, N + 1)
    # returns:
    # logits (scores for softmax) of shape (batch size, seq_length, N + 1)
    out, _ = self.gru(x)
    return self.linear(out)

  @torch.no_grad()
  def test_run(self, s):
    # This function accepts one string s containing lowercase characters a-z.
    x = torch.tensor([string.ascii_lowercase.index(c) + 1 for c in s])
    logits = self.forward(idx_to_onehot(x).unsqueeze(0))
    pred = logits.argmax(dim=-1).squeeze(0)
    return ''.join([' ' if i == 0 else string.ascii_lowercase[i - 1] for i in pred.tolist()])
'''

FIXED_TRAINING = '''
import time
from tqdm.notebook import tqdm
start_time = time.time()

# TODO: initialize and train your model here.
model = GRUMemory(hidden_size=128)
optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
criterion = torch.nn.CrossEntropyLoss()
loader = torch.utils.data.DataLoader(ds, batch_size=128)

model.train()
for seq, result in tqdm(loader, total=DATASET_SIZE // 128):
    out = model(idx_to_onehot(seq))
    loss = criterion(out.view(-1, N + 1), result.view(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print('last loss', loss.item())

end_time = time.time()
duration = end_time - start_time
accuracy = test_model(model)
assert duration < 600, 'execution took f{duration:.2f} seconds, which longer than 10 mins'
assert accuracy > 0.99, f'accuracy is too low, got {accuracy}, need 0.99'
print('tests passed')
'''

MULTI_HEAD_MODEL = '''
class VariableDelayGRUMemory(torch.nn.Module):

  def __init__(self, hidden_size, max_delay):
    super().__init__()
    self.max_delay = max_delay
    self.gru = torch.nn.GRU(N + 1, hidden_size, batch_first=True)
    # one output layer for every possible delay, the delay just picks which one is used
    self.heads = torch.nn.ModuleList([torch.nn.Linear(hidden_size, N + 1) for _ in range(max_delay + 1)])

  def forward(self, x, delays):
    # inputs:
    # x - tensor of shape (batch size, seq length, N + 1)
    # delays - tensor of shape (batch size)
    # returns:
    # logits (scores for softmax) of shape (batch size, seq_length, N + 1)
    h, _ = self.gru(x)
    all_out = torch.stack([head(h) for head in self.heads], dim=1)  # (B, max_delay+1, T, N+1)
    return all_out[torch.arange(x.shape[0]), delays.long()]

  @torch.no_grad()
  def test_run(self, s, delay):
    x = torch.tensor([string.ascii_lowercase.index(c) + 1 for c in s])
    logits = self.forward(idx_to_onehot(x).unsqueeze(0), torch.tensor([delay]))
    pred = logits.argmax(dim=-1).squeeze(0)
    return ''.join([' ' if i == 0 else string.ascii_lowercase[i - 1] for i in pred.tolist()])
'''

VARIABLE_TRAINING = '''
import time
start_time = time.time()

MAX_DELAY = 8
SEQ_LENGTH = 20

# TODO: implement model training here.
model = VariableDelayGRUMemory(hidden_size=128, max_delay=MAX_DELAY)
optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
criterion = torch.nn.CrossEntropyLoss()
dataset = VariableDelayEchoDataset(max_delay=MAX_DELAY, seq_length=SEQ_LENGTH, size=150000)
loader = torch.utils.data.DataLoader(dataset, batch_size=128)

model.train()
for seq, delay, result in tqdm(loader, total=150000 // 128):
    h, _ = model.gru(idx_to_onehot(seq))
    # train every head at once: head d has to output the input shifted by d
    loss = 0
    for d, head in enumerate(model.heads):
        target = torch.zeros_like(seq)
        target[:, d:] = seq[:, :SEQ_LENGTH - d]
        loss = loss + criterion(head(h).reshape(-1, N + 1), target.reshape(-1))
    loss = loss / len(model.heads)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print('last loss', loss.item())

end_time = time.time()
assert end_time - start_time < 600, 'executing took longer than 10 mins'
assert test_variable_delay_model(model) > 0.99, 'accuracy is too low'
print('tests passed')
'''

RNN_TQDM = student(RNN, {
    "class GRUMemory(torch.nn.Module):": GRU_MEMORY,
    "# TODO: initialize and train your model here.": FIXED_TRAINING,
    "class VariableDelayGRUMemory(torch.nn.Module):": MULTI_HEAD_MODEL,
    "# TODO: implement model training here.": VARIABLE_TRAINING,
})

# A bigger network trained for two passes over the data: correct, and slower than the nominal
# limit per cell here (the test lowers the nominal limit to make that so without ten minutes of CI).
# The trained network is called gru_model and passed to the template's test by that name.
SLOW_FIXED_TRAINING = '''
import time
start_time = time.time()

# TODO: initialize and train your model here.
gru_model = GRUMemory(hidden_size=256)
optimizer = torch.optim.Adam(gru_model.parameters(), lr=0.002)
criterion = torch.nn.CrossEntropyLoss()
loader = torch.utils.data.DataLoader(ds, batch_size=64)

gru_model.train()
for epoch in range(2):
    for i, (seq, result) in enumerate(loader):
        out = gru_model(idx_to_onehot(seq))
        loss = criterion(out.view(-1, N + 1), result.view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f'epoch {epoch}: loss {loss.item():.4f}')

end_time = time.time()
duration = end_time - start_time
accuracy = test_model(gru_model)
assert duration < 600, 'execution took f{duration:.2f} seconds, which longer than 10 mins'
assert accuracy > 0.99, f'accuracy is too low, got {accuracy}, need 0.99'
print('tests passed')
'''

CONCAT_DELAY_MODEL = '''
class VariableDelayGRUMemory(torch.nn.Module):

  def __init__(self, hidden_size, max_delay):
    super().__init__()
    self.max_delay = max_delay
    # the delay goes in as a one-hot next to every character
    self.gru = torch.nn.GRU(N + 1 + max_delay + 1, hidden_size, batch_first=True)
    self.out = torch.nn.Linear(hidden_size, N + 1)

  def forward(self, x, delays):
    d = torch.nn.functional.one_hot(delays.long(), self.max_delay + 1).float()
    d = d.unsqueeze(1).expand(-1, x.shape[1], -1)
    h, _ = self.gru(torch.cat([x, d], dim=-1))
    return self.out(h)

  @torch.no_grad()
  def test_run(self, s, delay):
    x = torch.tensor([ord(c) - 96 for c in s])
    pred = self.forward(idx_to_onehot(x).unsqueeze(0), torch.tensor([delay]))[0].argmax(-1)
    return ''.join(' ' if i == 0 else chr(i + 96) for i in pred.tolist())
'''

CONCAT_TRAINING = '''
import time
start_time = time.time()

MAX_DELAY = 8
SEQ_LENGTH = 20

# TODO: implement model training here.
model = VariableDelayGRUMemory(hidden_size=128, max_delay=MAX_DELAY)
optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
loader = torch.utils.data.DataLoader(VariableDelayEchoDataset(MAX_DELAY, SEQ_LENGTH, 60000), batch_size=128)
for seq, delay, result in loader:
    out = model(idx_to_onehot(seq), delay)
    loss = torch.nn.functional.cross_entropy(out.reshape(-1, N + 1), result.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print('loss', loss.item())

end_time = time.time()
assert end_time - start_time < 600, 'executing took longer than 10 mins'
assert test_variable_delay_model(model) > 0.99, 'accuracy is too low'
print('tests passed')
'''

RNN_SLOW = student(RNN, {
    "class GRUMemory(torch.nn.Module):": GRU_MEMORY,
    "# TODO: initialize and train your model here.": SLOW_FIXED_TRAINING,
    "class VariableDelayGRUMemory(torch.nn.Module):": CONCAT_DELAY_MODEL,
    "# TODO: implement model training here.": CONCAT_TRAINING,
})

# Plots with seaborn, which is not part of the course's environment; the variable-delay part is
# not done (its cell still has `model = None`).
RNN_PARTIAL = student(RNN, {
    "class GRUMemory(torch.nn.Module):": GRU_MEMORY,
    "# TODO: initialize and train your model here.": FIXED_TRAINING.replace(
        "for seq, result in tqdm(loader, total=DATASET_SIZE // 128):",
        "losses = []\nfor seq, result in tqdm(loader, total=DATASET_SIZE // 128):").replace(
        "    optimizer.step()\n", "    optimizer.step()\n    losses.append(loss.item())\n"),
}, insert=[("total=DATASET_SIZE // 128", "import seaborn as sns\nsns.lineplot(x=range(len(losses)), y=losses)")])


# ============================================================== 08-seq_classification
CLIP_IN_TRAIN = ("        loss.backward()  # Step ④\n",
                 "        loss.backward()  # Step ④\n\n"
                 "        # FIX: clip the gradient norm so one bad batch can't blow up the weights\n"
                 "        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.25)\n")

SEQ_FLAT_FIXED = student(SEQ, {}, replace=[
    # The two helper files were uploaded beside the notebook on Colab, so they import flat.
    ("from res.sequential_tasks import TemporalOrderExp6aSequence as QRSU",
     "from sequential_tasks import TemporalOrderExp6aSequence as QRSU"),
    ("from res.plot_lib import set_default, plot_state, print_colourbar",
     "from plot_lib import set_default, plot_state, print_colourbar"),
    CLIP_IN_TRAIN,
    ("QRSU.DifficultyLevel.MODERATE", "optimizer = torch.optim.RMSprop(model.parameters(), lr=0.001)",
     "# FIX: smaller learning rate (and gradient clipping inside train())\n"
     "optimizer = torch.optim.RMSprop(model.parameters(), lr=0.0005)"),
])


# ============================================================== more of the course's habits (corpus, part 2)
# A lazy layer (its input size is found on the first forward pass), and the written answer put
# after a code cell of the student's own, below the untouched placeholder.
LAZY_CNN_MODEL = GPU_CNN_MODEL.replace("        self.fc = nn.Linear(32, 2)", "        self.fc = nn.LazyLinear(2)")

CNN_LAZY = student(CNN, {
    "class CNN_Solution(nn.Module):": LAZY_CNN_MODEL,
    "def get_loss_and_correct(model, batch, criterion, device):": LOSS_AND_STEP,
    "criterion = None # TODO": GPU_CNN_SETUP.replace('device = torch.device("cuda:0")\nprint(torch.cuda.get_device_name(0))\n'
                                                     'model = model.cuda()\ncriterion = criterion.cuda()',
                                                     "device = 'cuda' if torch.cuda.is_available() else 'cpu'\n"
                                                     "model = model.to(device)"),
    "after:### Testing": TESTING,
    "after:Pick a few intermediate representations": FEATURE_MAPS,
    "Your answer here": FILTERS_ANSWER,
}, insert=[
    ("put your answer here", "gap = [t - v for t, v in zip(train_accuracies, validation_accuracies)]\n"
                             "print('train - validation accuracy per epoch:', [round(g, 3) for g in gap])"),
    ("train - validation accuracy per epoch", "md:" + OVERFIT_ANSWER),
])

# Planted mistake: the test accuracy is typed in, not computed (the examples are shown).
HARD_CODED_TESTING = """
# computed it on colab, it was around 95%
print('Test accuracy: 0.95')
imgs = [test_dataset[i][0] for i in range(4)]
plt.figure(figsize=(8, 2))
for k, img in enumerate(imgs):
    plt.subplot(1, 4, k + 1)
    show_normalized_image(img)
plt.show()
"""

CNN_HARD_CODED = student(CNN, {
    "class CNN_Solution(nn.Module):": GPU_CNN_MODEL,
    "def get_loss_and_correct(model, batch, criterion, device):": LOSS_AND_STEP,
    "criterion = None # TODO": GPU_CNN_SETUP.replace("N_EPOCHS = 20", "N_EPOCHS = 3"),
    "put your answer here": OVERFIT_ANSWER,
    "after:### Testing": HARD_CODED_TESTING,
    "after:Pick a few intermediate representations": FEATURE_MAPS,
    "Your answer here": FILTERS_ANSWER,
})

# VariableDelayGRUMemory.forward takes letter indices and embeds them (not one-hot input); its
# own test_run matches, so the template's test passes.
INDEX_MODEL = """
class VariableDelayGRUMemory(torch.nn.Module):

  def __init__(self, hidden_size, max_delay):
    super().__init__()
    self.max_delay = max_delay
    self.embed = torch.nn.Embedding(N + 1, 32)
    self.gru = torch.nn.GRU(32, hidden_size, batch_first=True)
    self.heads = torch.nn.Linear(hidden_size, (max_delay + 1) * (N + 1))

  def forward(self, x, delays):
    # x holds letter indices (batch, seq length): the embedding does the one-hot for us
    h, _ = self.gru(self.embed(x.long()))
    out = self.heads(h).view(x.shape[0], x.shape[1], self.max_delay + 1, N + 1)
    return out[torch.arange(x.shape[0]), :, delays.long()]

  @torch.no_grad()
  def test_run(self, s, delay):
    x = torch.tensor([[ord(c) - ord('a') + 1 for c in s]])
    pred = self.forward(x, torch.tensor([delay]))[0].argmax(-1)
    return ''.join(' ' if i == 0 else chr(ord('a') + i - 1) for i in pred.tolist())
"""

INDEX_TRAINING = """
import time
start_time = time.time()

MAX_DELAY = 8
SEQ_LENGTH = 20

# TODO: implement model training here.
model = VariableDelayGRUMemory(hidden_size=128, max_delay=MAX_DELAY)
optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
loader = torch.utils.data.DataLoader(VariableDelayEchoDataset(MAX_DELAY, SEQ_LENGTH, 150000), batch_size=128)
for seq, delay, result in loader:
    h, _ = model.gru(model.embed(seq))
    out = model.heads(h).view(seq.shape[0], SEQ_LENGTH, MAX_DELAY + 1, N + 1)
    targets = torch.stack([torch.cat([torch.zeros(seq.shape[0], d, dtype=torch.long), seq[:, :SEQ_LENGTH - d]], 1)
                           for d in range(MAX_DELAY + 1)], dim=2)
    loss = torch.nn.functional.cross_entropy(out.reshape(-1, N + 1), targets.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print('loss', loss.item())

end_time = time.time()
assert end_time - start_time < 600, 'executing took longer than 10 mins'
assert test_variable_delay_model(model) > 0.99, 'accuracy is too low'
print('tests passed')
"""

RNN_INDEX = student(RNN, {
    "class GRUMemory(torch.nn.Module):": GRU_MEMORY,
    "# TODO: initialize and train your model here.": FIXED_TRAINING,
    "class VariableDelayGRUMemory(torch.nn.Module):": INDEX_MODEL,
    "# TODO: implement model training here.": INDEX_TRAINING,
})

# Section 8 as two real copies laid it out: the original run kept first ("the original one"),
# then `train` redefined to record gradient and weight norms (and clip when CLIP is set), the
# original settings run again with the recording on (the "before"), the fix run from the same
# seed (the "after"), and plots of both (the extra credit).
SETUP_8 = """
torch.manual_seed(1)
difficulty = QRSU.DifficultyLevel.MODERATE
batch_size = 32
train_data_gen = QRSU.get_predefined_generator(difficulty, batch_size)
test_data_gen = QRSU.get_predefined_generator(difficulty, batch_size)
input_size = train_data_gen.n_symbols
hidden_size = 12
output_size = train_data_gen.n_classes
model = SimpleLSTM(input_size, hidden_size, output_size)
criterion = torch.nn.CrossEntropyLoss()
"""

FIX_AFTER_ORIGINAL = [
    ("plot_state(X.cpu(), H_t", "md:## Fixing the spikes\n\nThe run above is the original one. Below, `train` records "
                                "the gradient and weight norms at every step (and clips the gradient norm when `CLIP` is "
                                "set); the original settings are run again with the recording on, then the fix: same "
                                "seed, clipping at 0.25 and a smaller learning rate."),
    ("## Fixing the spikes", """
CLIP = None
grad_norms, weight_norms = [], []

def train(model, train_data_gen, criterion, optimizer, device):
    model.train()
    num_correct = 0
    for batch_idx in range(len(train_data_gen)):
        data, target = train_data_gen[batch_idx]
        data, target = torch.from_numpy(data).float().to(device), torch.from_numpy(target).long().to(device)
        output = model(data)[:, -1, :]
        target = target.argmax(dim=1)
        loss = criterion(output, target)
        optimizer.zero_grad()
        loss.backward()
        grad_norms.append(sum(p.grad.norm() ** 2 for p in model.parameters()).sqrt().item())
        if CLIP is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=CLIP)
        optimizer.step()
        weight_norms.append(sum(p.data.norm() ** 2 for p in model.parameters()).sqrt().item())
        num_correct += (output.argmax(dim=1) == target).sum().item()
    return num_correct, loss.item()
"""),
    ("grad_norms, weight_norms = [], []", "# before: the original settings, recorded" + SETUP_8 + """optimizer = torch.optim.RMSprop(model.parameters(), lr=0.001)
max_epochs = 100
model = train_and_test(model, train_data_gen, test_data_gen, criterion, optimizer, max_epochs, verbose=False)
before = (grad_norms, weight_norms)
grad_norms, weight_norms = [], []
"""),
    ("# before: the original settings", "# after: the fix" + SETUP_8 + """CLIP = 0.25
optimizer = torch.optim.RMSprop(model.parameters(), lr=0.0005)
max_epochs = 100
model = train_and_test(model, train_data_gen, test_data_gen, criterion, optimizer, max_epochs, verbose=False)
after = (grad_norms, weight_norms)
"""),
    ("# after: the fix", """
for k, what in enumerate(['gradient norm per step (before clipping)', 'weight norm per step']):
    plt.figure(figsize=(10, 3))
    plt.plot(before[k], label='original')
    plt.plot(after[k], label='fixed')
    plt.title(what)
    plt.legend()
    plt.show()
"""),
]

SEQ_FIX_AFTER = student(SEQ, {}, insert=FIX_AFTER_ORIGINAL)

# Planted mistake: the fix also changes the seed (and the data generators' state with it).
SEQ_SEED_CHANGED = student(SEQ, {}, replace=[
    ("QRSU.DifficultyLevel.MODERATE", "torch.manual_seed(1)", "torch.manual_seed(42)"),
    CLIP_IN_TRAIN,
    ("QRSU.DifficultyLevel.MODERATE", "optimizer = torch.optim.RMSprop(model.parameters(), lr=0.001)",
     "optimizer = torch.optim.RMSprop(model.parameters(), lr=0.0005)"),
])


# ============================================================== the cases
def template(name: str) -> str:
    return (TEMPLATE / name).read_text()


# zip name -> {member name: notebook text, or None for the theory PDF}
CASES: dict[str, dict[str, str | None]] = {
    # Colab GPU habits throughout: unconditional cuda:0 and .cuda() (2022), tqdm.notebook bars,
    # the helpers imported flat, a Section 8 fix inside the shared train().
    "cg1001.zip": {"hw2_theory.pdf": None, CNN: CNN_GPU, RNN: RNN_TQDM, SEQ: SEQ_FLAT_FIXED},
    # drive.mount, !pip, !nvidia-smi, /content paths, a files.upload() of their own photo and a
    # files.download of the model; Section 8 not attempted (the template's res/ imports).
    "cc1002.zip": {"hw2_theory.pdf": None, CNN: CNN_COLAB, RNN: RNN_TQDM, SEQ: template(SEQ)},
    # A NameError of its own in the CNN notebook; the answers not written.
    "cb1003.zip": {"hw2_theory.pdf": None, CNN: CNN_BROKEN, RNN: RNN_TQDM, SEQ: SEQ_FLAT_FIXED},
    # A correct training slower than the nominal cell limit here; the model is called gru_model.
    "cs1004.zip": {"hw2_theory.pdf": None, CNN: CNN_GPU, RNN: RNN_SLOW, SEQ: SEQ_FLAT_FIXED},
    # The template handed in as it came (nothing done).
    "cr1005.zip": {"hw2_theory.pdf": None, CNN: template(CNN), RNN: template(RNN), SEQ: template(SEQ)},
    # seaborn (not in the course's environment); the variable-delay part left as `model = None`.
    "cp1006.zip": {"hw2_theory.pdf": None, CNN: CNN_GPU, RNN: RNN_PARTIAL, SEQ: template(SEQ)},
    # Named as Brightspace's "download" renames nothing: CG1007_HW2.zip, 3 h late.
    "CG1007_HW2.zip": {"hw2_theory.pdf": None, CNN: CNN_GPU, RNN: RNN_TQDM, SEQ: SEQ_FLAT_FIXED},
    # 30 h late: not accepted.
    "cl1008.zip": {"hw2_theory.pdf": None, CNN: CNN_GPU, RNN: RNN_TQDM, SEQ: SEQ_FLAT_FIXED},
    # Zipped on a Mac: a wrapping folder, __MACOSX and .DS_Store.
    "cm1009.zip": {"hw2/hw2_theory.pdf": None, f"hw2/{CNN}": CNN_COLAB, f"hw2/{RNN}": RNN_TQDM,
                   f"hw2/{SEQ}": SEQ_FLAT_FIXED, "hw2/.DS_Store": "", "__MACOSX/hw2/._hw2_cnn.ipynb": ""},
    # Downloaded from Colab's "Save a copy in Drive": every notebook is "Copy of ...".
    "cn1010.zip": {"hw2_theory.pdf": None, f"Copy of {CNN}": CNN_GPU, f"Copy of {RNN}": RNN_SLOW,
                   f"Copy of {SEQ}": SEQ_FLAT_FIXED},
    # Correct, written differently: a lazy layer, the answer below a code cell of their own, a
    # variable-delay model whose forward takes indices, the original Section 8 run kept first.
    "cv1011.zip": {"hw2_theory.pdf": None, CNN: CNN_LAZY, RNN: RNN_INDEX, SEQ: SEQ_FIX_AFTER},
    # Planted mistakes: a typed-in test accuracy, a changed seed in Section 8.
    "cw1012.zip": {"hw2_theory.pdf": None, CNN: CNN_HARD_CODED, RNN: RNN_TQDM, SEQ: SEQ_SEED_CHANGED},
}


def build_zip(name: str, members: dict[str, str | None], out: Path) -> Path:
    path = out / name
    net_id = name.split(".")[0].split("_")[0].lower()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, text in members.items():
            data = theory_pdf(net_id) if text is None else text.encode()
            zf.writestr(zipfile.ZipInfo(member, date_time=FIXED_TIME), data)
    return path


def build_all(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [build_zip(name, members, out) for name, members in CASES.items()]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: make_corpus.py OUT_DIR")
    for p in build_all(Path(sys.argv[1])):
        print(p)
