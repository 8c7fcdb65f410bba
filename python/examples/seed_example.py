from magpool import ObjectPool, BufferManager
import pandas as pd
import numpy as np

# DataFrame对象池
df_pool = ObjectPool(
    factory=lambda: pd.DataFrame(),
    reset_func=lambda df: df.drop(df.index, inplace=True)
)

# 获取DataFrame
df = df_pool.acquire()
df['price'] = [100, 101, 102]
# 使用完毕后归还
df_pool.release(df)

# NumPy缓冲区管理器
buffer_mgr = BufferManager(max_buffers=50)

# 获取缓冲区
buffer = buffer_mgr.get_buffer(size=1000, dtype='float64')
buffer[:] = np.random.randn(1000)
# 使用完毕后释放
buffer_mgr.release_buffer(buffer)

# 清理未使用的缓冲区
cleared = buffer_mgr.clear_unused(max_age=30.0)
print(f"清理了 {cleared} 个缓冲区")
