// `TransposeHeads`: the per-head transposed copy (MLA's W_UKᵀ) holds exactly the values of the
// blocks it was cut from — every element of the copy, decoded, equals the source element
// decoded (`DecodeRow` of each, bitwise), for every dtype — and refuses FP8 layouts whose 128×128 scale
// blocks would not move whole.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/weight.h"
#include "linear_test_util.h"

namespace dsinfer {
namespace {

class TransposeHeadsTest : public ::testing::TestWithParam<DType> {};

TEST_P(TransposeHeadsTest, EveryElementMovesExactly) {
  // 3 heads of stride 256: rows [h·256, h·256 + 200) transposed; cols 384 (3 scale blocks),
  // 200 rows → two column blocks in the copy, the second partial.
  const int64_t heads = 3, stride = 256, offset = 0, rows = 200, cols = 384;
  const test::Matrix m = test::MakeMatrix(GetParam(), heads * stride, cols, 5);
  const auto t = TransposeHeads(m.view, heads, stride, offset, rows);
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->view.rows, heads * cols);
  ASSERT_EQ(t->view.cols, rows);
  ASSERT_EQ(t->view.dtype, GetParam());
  std::vector<float> src(heads * stride * cols), row(rows);  // the source, decoded
  for (int64_t r = 0; r < heads * stride; ++r) DecodeRow(m.view, r, &src[r * cols]);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t c = 0; c < cols; ++c) {
      DecodeRow(t->view, h * cols + c, row.data());
      for (int64_t i = 0; i < rows; ++i)
        ASSERT_EQ(row[i], src[(h * stride + offset + i) * cols + c])
            << "head " << h << " col " << c << " row " << i;
    }
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, TransposeHeadsTest,
                         ::testing::Values(DType::kF8E4M3, DType::kBF16, DType::kF16,
                                           DType::kF32));

TEST(TransposeHeads, OffsetHeadsAndUnalignedFp8) {
  // A non-zero offset (W_UV-style blocks) moves exactly too.
  const test::Matrix m = test::MakeMatrix(DType::kF8E4M3, 2 * 256, 128, 9);
  const auto t = TransposeHeads(m.view, 2, 256, 128, 128);
  ASSERT_NE(t, nullptr);
  std::vector<float> row(128), src(128);
  DecodeRow(t->view, 128 + 7, row.data());  // head 1, column 7
  for (int64_t i = 0; i < 128; ++i) {
    DecodeRow(m.view, 256 + 128 + i, src.data());
    ASSERT_EQ(row[i], src[7]) << i;
  }
  // FP8 with a stride, offset or width off the 128 grid has no exact block-scale layout.
  const test::Matrix odd = test::MakeMatrix(DType::kF8E4M3, 4 * 44, 80, 3);
  EXPECT_EQ(TransposeHeads(odd.view, 4, 44, 0, 24), nullptr);
  EXPECT_EQ(TransposeHeads(m.view, 2, 256, 64, 128), nullptr);
  // Other dtypes have no blocks: any layout works.
  const test::Matrix bf = test::MakeMatrix(DType::kBF16, 4 * 44, 80, 3);
  const auto tb = TransposeHeads(bf.view, 4, 44, 0, 24);
  ASSERT_NE(tb, nullptr);
  std::vector<float> r24(24);
  DecodeRow(tb->view, 3 * 80 + 79, r24.data());  // head 3, column 79
  for (int64_t i = 0; i < 24; ++i) ASSERT_EQ(static_cast<double>(r24[i]), bf.At(3 * 44 + i, 79));
}

}  // namespace
}  // namespace dsinfer
